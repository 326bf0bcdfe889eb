#include "daemon/daemon.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "base/log.h"
#include "config/config.h"
#include "daemon/notify.h"
#include "daemon/reload.h"
#include "engine/engine_factory.h"
#include "ipc/metrics.h"
#include "ipc/server.h"

namespace zaya::daemon {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

void ConfigureLogging(const LogConfig& c, bool foreground) {
  log::Priority level = log::Priority::kInfo;
  if (!log::ParsePriority(c.level, &level)) level = log::Priority::kInfo;
  log::Sink sink = log::Sink::kAuto;
  if (c.target == "journal") sink = log::Sink::kJournal;
  if (c.target == "stderr" || (foreground && c.target == "auto")) sink = log::Sink::kStderr;
  log::Configure(level, sink);
}

int64_t Int(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}

// One STATUS= line: model, queue and memory, short enough for `systemctl status`.
std::string StatusLine(const json& status, const ipc::Server& server) {
  std::string model = "model";
  if (status.contains("model") && status["model"].is_object()) {
    const json& m = status["model"];
    if (m.contains("path") && m["path"].is_string()) {
      model = m["path"].get<std::string>();
      if (auto slash = model.find_last_of('/');
          slash != std::string::npos && slash + 1 < model.size()) {
        model = model.substr(slash + 1);
      }
    }
  }
  std::string line = "serving " + model + " on " + server.endpoint() + "; queue " +
                     std::to_string(Int(status, "queue_depth")) + ", running " +
                     std::to_string(Int(status, "running_requests")) + ", clients " +
                     std::to_string(server.Clients());
  if (status.contains("memory") && status["memory"].is_object()) {
    const json& mem = status["memory"];
    if (mem.contains("state") && mem["state"].is_object()) {
      line += "; state " + FormatSize(static_cast<uint64_t>(Int(mem["state"], "used_bytes"))) +
              "/" + FormatSize(static_cast<uint64_t>(Int(mem["state"], "budget_bytes")));
    }
    if (mem.contains("weights") && mem["weights"].is_object()) {
      line += ", weights " + FormatSize(static_cast<uint64_t>(Int(mem["weights"], "used_bytes")));
    }
  }
  return line;
}

// Watches the signalfd on its own thread while the model loads (see Daemon::Run). SIGTERM/SIGINT:
// logged, STOPPING=1 sent, and the process ends with status 0 (what a stop exits with); no
// destructor runs, as the load is still going on the main thread. SIGHUP: remembered, for a
// reload once serving.
class LoadWatcher {
 public:
  LoadWatcher(int signal_fd, Notifier& notifier)
      : thread_([this, signal_fd, &notifier] { Watch(signal_fd, notifier); }) {}
  ~LoadWatcher() { Finish(); }
  LoadWatcher(const LoadWatcher&) = delete;
  LoadWatcher& operator=(const LoadWatcher&) = delete;

  // Stops watching; true when a SIGHUP arrived meanwhile.
  bool Finish() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
    return hup_;
  }

 private:
  void Watch(int signal_fd, Notifier& notifier) {
    while (!done_) {
      pollfd p{signal_fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      signalfd_siginfo info{};
      while (read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo == SIGHUP) {
          ZAYA_LOG(kInfo, "SIGHUP while the model loads: reloading once it is ready");
          hup_ = true;
        } else if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
          ZAYA_LOG(kNotice, std::string(info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM") +
                                " while the model loads: stopping without serving");
          notifier.Stopping("stopped while loading the model");
          _exit(0);
        }
      }
    }
  }

  std::atomic<bool> done_{false};
  std::atomic<bool> hup_{false};
  std::thread thread_;  // last: starts after the flags exist
};

class Daemon {
 public:
  Daemon(DaemonArgs args, Config config) : args_(std::move(args)), config_(std::move(config)) {}

  int Run(int signal_fd) {
    // Socket activation is checked before the model loads, so a wrong socket unit fails at once.
    auto listen_fd = AdoptedSocket();
    if (!listen_fd.ok()) {
      ZAYA_LOG(kErr, "cannot start: " + listen_fd.status().message());
      notifier_.Status("failed: " + listen_fd.status().message());
      return 1;
    }
    notifier_.Status("loading model " + config_.model.path);
    ZAYA_LOG(kInfo, "loading model " + config_.model.path);
    bool reload_pending = false;
    Result<std::unique_ptr<Engine>> engine = Unavailable("not loaded");
    {
      // Loading a large model takes minutes, and the signals wait in the signalfd until the loop
      // below reads them: a stop during the load would only act after it, and systemd's stop
      // timeout would SIGKILL us. This watcher acts on them during the load: nothing is served
      // yet, so a stop ends the process at once.
      LoadWatcher watcher(signal_fd, notifier_);
      engine = CreateEngine(config_);
      reload_pending = watcher.Finish();
    }
    if (!engine.ok()) {
      ZAYA_LOG(kErr, "cannot start: " + engine.status().ToString());
      notifier_.Status("failed: " + engine.status().message());
      return 1;
    }
    engine_ = std::move(*engine);

    ipc::ServerOptions options;
    options.ipc = config_.ipc;
    options.limits = ipc::ProtocolLimits::FromConfig(config_);
    options.listen_fd = *listen_fd;
    const json status = engine_->Status();
    options.hello = {{"server", std::string("zayad ") + ZAYA_VERSION},
                     {"model", status.contains("model") ? status["model"] : json()}};
    auto server = ipc::Server::Create(options, engine_.get(), &metrics_);
    if (!server.ok()) {
      ZAYA_LOG(kErr, "cannot serve: " + server.status().ToString());
      notifier_.Status("failed: " + server.status().message());
      return 1;
    }
    server_ = std::move(*server);
    server_->WatchFd(signal_fd, [this, signal_fd] { OnSignal(signal_fd); });
    auto tick = std::chrono::milliseconds(1000);
    if (auto wd = notifier_.watchdog_interval()) {
      tick =
          std::max(std::chrono::milliseconds(1),
                   std::min(tick, std::chrono::duration_cast<std::chrono::milliseconds>(*wd / 2)));
    }
    server_->SetTick(tick, [this] { OnTick(); });

    const std::string line = StatusLine(engine_->Status(), *server_);
    ZAYA_LOG(kNotice, "zayad ready: " + line);
    notifier_.Ready(line);
    last_status_ = line;
    if (reload_pending) Reload();  // a SIGHUP that came during the load

    const Status run = server_->Run();
    if (!run.ok()) ZAYA_LOG(kErr, "serving loop failed: " + run.ToString());
    if (drainer_.joinable()) drainer_.join();
    // Deliver the terminal events the drain produced before the socket closes.
    const auto flush_end = Clock::now() + std::chrono::seconds(1);
    while (server_->InFlight() > 0 && Clock::now() < flush_end) {
      (void)server_->RunOnce(std::chrono::milliseconds(20));
    }
    server_.reset();
    engine_.reset();
    ZAYA_LOG(kNotice, "zayad stopped");
    return run.ok() ? 0 : 1;
  }

 private:
  // The listening socket systemd passed (LISTEN_FDS/LISTEN_PID), or -1 when zayad should bind
  // ipc.endpoint itself. Exactly one stream socket is accepted; anything else is an error rather
  // than a guess, since serving on a socket nobody connects to looks like a hung daemon.
  Result<int> AdoptedSocket() {
    const int n = sd_listen_fds(/*unset_environment=*/1);
    if (n < 0) {
      return InvalidArgument(std::string("LISTEN_FDS/LISTEN_PID from systemd are invalid: ") +
                             std::strerror(-n));
    }
    if (n == 0) return -1;
    if (n > 1) {
      return InvalidArgument("systemd passed " + std::to_string(n) +
                             " sockets (LISTEN_FDS); zayad serves exactly one: give zayad.socket "
                             "a single ListenStream= line");
    }
    auto endpoint = ipc::ListenFdEndpoint(SD_LISTEN_FDS_START);
    if (!endpoint.ok()) {
      return InvalidArgument("the socket passed by systemd (LISTEN_FDS) cannot be served: " +
                             endpoint.status().message() +
                             "; zayad.socket needs one ListenStream= and Accept=no");
    }
    ZAYA_LOG(kInfo, "socket activation: serving " + *endpoint + " passed by systemd");
    if (*endpoint != config_.ipc.endpoint) {
      ZAYA_LOG(kWarning, "ipc.endpoint is " + config_.ipc.endpoint + " but systemd passed " +
                             *endpoint + "; serving " + *endpoint +
                             " (make them match so clients find the daemon without the socket)");
    }
    return SD_LISTEN_FDS_START;
  }

  void OnSignal(int signal_fd) {
    signalfd_siginfo info{};
    while (read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      switch (info.ssi_signo) {
        case SIGHUP:
          Reload();
          break;
        case SIGTERM:
        case SIGINT:
          BeginStop(static_cast<int>(info.ssi_signo));
          break;
        default:
          break;
      }
    }
  }

  void OnTick() {
    if (notifier_.watchdog_interval() && engine_->Healthy()) notifier_.Watchdog();
    const auto now = Clock::now();
    if (now < next_status_) return;
    next_status_ = now + std::chrono::seconds(5);
    std::string line = StatusLine(engine_->Status(), *server_);
    if (stopping_) line = "draining: " + line;
    if (line != last_status_) {
      notifier_.Status(line);
      last_status_ = line;
    }
  }

  void Reload() {
    if (stopping_) return;
    notifier_.Reloading();
    ZAYA_LOG(kInfo, "SIGHUP: reloading " + args_.config_path);
    auto next = LoadConfig(args_.config_path);
    if (!next.ok()) {
      ZAYA_LOG(kErr,
               "reload failed; keeping the running configuration: " + next.status().message());
      notifier_.Ready("reload failed, running config kept; " + last_status_);
      return;
    }
    ReloadPlan plan = PlanReload(config_, *next);
    if (!plan.refused.empty()) {
      ZAYA_LOG(kErr,
               "reload refused, running configuration kept: the changed live keys do not fit "
               "the restart-only keys still in force; " +
                   plan.refused +
                   " (restart to apply the file as a whole: systemctl "
                   "restart zayad)");
      notifier_.Ready("reload refused, running config kept; " + last_status_);
      return;
    }
    // The engine checks the new [rsa] defaults against the loaded model's context (which the
    // file alone cannot know) before anything is applied, so a refusal leaves everything as it was.
    if (const Status engine = ReconfigureEngine(*engine_, plan.applied); !engine.ok()) {
      ZAYA_LOG(kErr, "reload refused, running configuration kept: " + engine.message());
      notifier_.Ready("reload refused, running config kept; " + last_status_);
      return;
    }
    config_ = std::move(plan.applied);
    ConfigureLogging(config_.log, args_.foreground);
    server_->UpdateLimits(ipc::ProtocolLimits::FromConfig(config_),
                          config_.ipc.max_requests_per_client);
    for (const auto& key : plan.need_restart) {
      ZAYA_LOG(kWarning, "reload: " + key +
                             " changed but applies only after a restart (systemctl restart zayad)");
    }
    std::string changed;
    for (const auto& key : plan.live_changes) changed += (changed.empty() ? "" : ", ") + key;
    ZAYA_LOG(kNotice,
             "configuration reloaded" +
                 (changed.empty() ? std::string(" (no live changes)") : "; applied " + changed));
    last_status_ = StatusLine(engine_->Status(), *server_);
    notifier_.Ready(last_status_);
  }

  void BeginStop(int signo) {
    if (stopping_) {
      ZAYA_LOG(kInfo, "already stopping; waiting for the drain to finish");
      return;
    }
    stopping_ = true;
    const auto timeout = config_.scheduler.drain_timeout;
    ZAYA_LOG(kNotice, std::string(signo == SIGINT ? "SIGINT" : "SIGTERM") +
                          ": stopping; draining requests for up to " + FormatDuration(timeout));
    notifier_.Stopping("draining " + std::to_string(server_->InFlight()) + " requests");
    server_->StopAccepting("shutting down");
    ipc::Server* server = server_.get();
    Engine* engine = engine_.get();
    // Drain blocks; the loop keeps forwarding events meanwhile, so it runs on its own thread.
    drainer_ = std::thread([server, engine, timeout] {
      engine->Drain(timeout.count());
      server->Stop();
    });
  }

  DaemonArgs args_;
  Config config_;
  Notifier notifier_;
  ipc::Metrics metrics_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ipc::Server> server_;
  std::thread drainer_;
  bool stopping_ = false;
  std::string last_status_;
  Clock::time_point next_status_{};
};

}  // namespace

int RunDaemon(const DaemonArgs& args) {
  // Block the signals before any thread exists so every thread inherits the mask and only the
  // signalfd sees them.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) return 1;
  signal(SIGPIPE, SIG_IGN);
  const int signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    ZAYA_LOG(kErr, "signalfd failed");
    return 1;
  }

  log::Configure(log::Priority::kInfo, args.foreground ? log::Sink::kStderr : log::Sink::kAuto);
  auto config = LoadConfig(args.config_path);
  if (!config.ok()) {
    ZAYA_LOG(kErr, config.status().message());
    sd_notify(0, ("STATUS=bad configuration: " + config.status().message()).c_str());
    close(signal_fd);
    return 1;
  }
  ConfigureLogging(config->log, args.foreground);
  Daemon daemon(args, std::move(*config));
  const int rc = daemon.Run(signal_fd);
  close(signal_fd);
  return rc;
}

}  // namespace zaya::daemon
