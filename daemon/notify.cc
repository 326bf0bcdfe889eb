#include "daemon/notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

namespace zaya::daemon {

Notifier::Notifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
  }
}

void Notifier::Send(const std::string& state) { sd_notify(0, state.c_str()); }

void Notifier::Ready(const std::string& status) { Send("READY=1\nSTATUS=" + status); }

void Notifier::Reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000u + ts.tv_nsec / 1000;
  Send("RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::Stopping(const std::string& status) { Send("STOPPING=1\nSTATUS=" + status); }

void Notifier::Status(const std::string& status) { Send("STATUS=" + status); }

void Notifier::Watchdog() { Send("WATCHDOG=1"); }

}  // namespace zaya::daemon
