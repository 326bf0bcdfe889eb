// systemd service notification (sd_notify(3)) for zayad: READY/RELOADING/STOPPING, STATUS= lines
// and the watchdog. A no-op when NOTIFY_SOCKET is unset (started by hand), so callers never branch.
//
// Thread safety: the functions may be called from any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace zaya::daemon {

class Notifier {
 public:
  // Reads NOTIFY_SOCKET / WATCHDOG_USEC once (sd_watchdog_enabled).
  Notifier();

  void Ready(const std::string& status);
  // RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects.
  void Reloading();
  void Stopping(const std::string& status);
  void Status(const std::string& status);
  void Watchdog();

  // The watchdog interval systemd asked for, when it asked for one.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_; }

 private:
  void Send(const std::string& state);
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace zaya::daemon
