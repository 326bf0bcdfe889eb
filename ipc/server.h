// The daemon's ZeroMQ ROUTER loop: receives request frames, validates them (ipc/protocol.h),
// submits generate/solve to the Engine, answers hello/status/health/metrics/cancel itself, and
// streams the engine's events back to the client that asked.
//
// Clients: every connected DEALER is one client (keyed by its ROUTER identity). Its requests are
// tracked by the client's own ids; the engine sees "<hex identity>:<id>" so ids from different
// clients never collide, and "<hex identity>" as EngineRequest::client.
// A client is considered gone when a send to it fails (EHOSTUNREACH under ZMQ_ROUTER_MANDATORY, or
// EAGAIN because its send queue reached ipc.send_hwm). ZMTP heartbeats (ipc.heartbeat_interval /
// heartbeat_timeout) drop silent connections, and a client with requests in flight that has been
// sent nothing for heartbeat_interval gets a `progress` {"keepalive":true} event, so a vanished
// client is noticed within about heartbeat_timeout. A gone client's requests are cancelled with
// Engine::CancelClient.
//
// Threading: all zmq calls happen on the thread that calls Run/RunOnce (the "loop thread"). Engine
// events arrive on the engine's thread through an EventSink that only queues them and wakes the
// loop through an eventfd. Stop() may be called from any thread; every other method only from the
// loop thread (or before the loop starts).
#pragma once

#include <zmq.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "engine/engine.h"
#include "ipc/metrics.h"
#include "ipc/protocol.h"

namespace zaya::ipc {

struct ServerOptions {
  IpcConfig ipc;          // endpoint, limits, heartbeats, HWM
  ProtocolLimits limits;  // request validation
  // A socket-activated listening fd to adopt (ZMQ_USE_FD) instead of binding ipc.endpoint; -1 =
  // bind. It must pass ListenFdEndpoint(); endpoint() is then the fd's address. The server owns it
  // from Create() on (libzmq closes it with the socket) and never unlinks its socket file: systemd
  // keeps the socket across restarts of the daemon.
  int listen_fd = -1;
  nlohmann::json hello;  // extra fields for the `hello` reply (model, version, ...)
};

class EventQueue;

class Server {
 public:
  // Binds the endpoint. For ipc:// endpoints the parent folder is created when missing, an existing
  // socket file that still has a listener is an error (another zayad), and the socket file gets
  // mode 0660. `engine` and `metrics` must outlive the server.
  static Result<std::unique_ptr<Server>> Create(ServerOptions options, Engine* engine,
                                                Metrics* metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound endpoint (a tcp://...:0 endpoint resolved to its port).
  const std::string& endpoint() const { return endpoint_; }

  // Serves until Stop(). Returns the first fatal socket error, Ok after Stop().
  Status Run();
  // One iteration: waits up to `timeout` for input, then handles everything ready.
  Status RunOnce(std::chrono::milliseconds timeout);
  // Any thread: makes Run() return after the current iteration.
  void Stop();

  // Loop-thread hooks for the daemon: `on_readable` runs when `fd` is readable (e.g. a signalfd);
  // `fn` runs about every `period` (e.g. the watchdog).
  void WatchFd(int fd, std::function<void()> on_readable);
  void SetTick(std::chrono::milliseconds period, std::function<void()> fn);

  // New generate/solve requests are answered `unavailable: <reason>`; requests in flight go on.
  void StopAccepting(std::string reason);
  bool accepting() const { return accepting_; }

  // Applies limits that may change on reload (validation limits and per-client request limit).
  // Loop thread only (or before Run). max_message can be lowered, and raised again up to the value
  // the socket was bound with; above that it is kept there, with a warning, until a restart
  // (libzmq's frame cap is fixed at bind time).
  void UpdateLimits(const ProtocolLimits& limits, int max_requests_per_client);

  size_t InFlight() const { return requests_.size(); }
  size_t Clients() const { return clients_.size(); }

 private:
  struct Tracked {
    std::string identity;   // ROUTER routing id of the client
    std::string client_id;  // the id the client chose
    Op op = Op::kGenerate;
    std::chrono::steady_clock::time_point received;
    bool first_delta_seen = false;
    // generate's deadline_ms, enforced here (solve's is the engine's: it returns a partial answer).
    std::optional<std::chrono::steady_clock::time_point> deadline;
  };
  struct Client {
    // Client ids in flight, each with its engine id: "<hex identity>:<id>#<submission>". The
    // submission number makes a reused client id a new engine id, so that what the engine still
    // does for the old request (a cancel not yet applied, its `cancelled` event) never reaches
    // the new one.
    std::unordered_map<std::string, std::string> ids;
    std::chrono::steady_clock::time_point last_sent;
  };

  Server(ServerOptions options, Engine* engine, Metrics* metrics);
  Status Bind();
  void ReceiveAll();
  void HandleFrame(const std::string& identity, std::string_view frame);
  void HandleRequest(const std::string& identity, Request request);
  void DispatchEngineEvents();
  void SendKeepalives();
  void ExpireDeadlines();
  // Sends one frame to `identity`; on failure treats the client as gone and returns false.
  bool SendTo(const std::string& identity, const std::string& frame);
  void SendError(const std::string& identity, std::string_view id, std::string_view code,
                 std::string_view message, std::string_view op);
  void ClientGone(const std::string& identity);
  void Forget(const std::string& engine_id);
  void PublishGauges();

  ServerOptions options_;
  Engine* engine_;
  Metrics* metrics_;
  void* context_ = nullptr;
  void* socket_ = nullptr;
  std::string endpoint_;
  std::shared_ptr<EventQueue> queue_;
  std::shared_ptr<EventSink> sink_;
  std::atomic<bool> stop_{false};
  bool accepting_ = true;
  std::string refuse_reason_;

  uint64_t submissions_ = 0;        // numbers engine ids (see Client)
  uint64_t bound_max_message_ = 0;  // ipc.max_message when the socket was bound (Bind)
  std::unordered_map<std::string, Tracked> requests_;  // by engine id
  std::unordered_map<std::string, Client> clients_;    // by identity
  size_t deadlines_ = 0;                               // tracked requests with a deadline

  std::vector<std::pair<int, std::function<void()>>> watched_;
  std::vector<zmq_pollitem_t> poll_items_;                   // socket, event queue, watched_
  std::vector<std::pair<std::string, EngineEvent>> events_;  // DispatchEngineEvents' batch
  // When the last frame was handed to libzmq; the destructor closes no sooner than kCloseGrace
  // after it (see ~Server).
  static constexpr std::chrono::milliseconds kCloseGrace{200};
  std::chrono::steady_clock::time_point last_send_{};
  std::chrono::milliseconds tick_period_{0};
  std::function<void()> tick_;
  std::chrono::steady_clock::time_point next_tick_{};
  std::chrono::steady_clock::time_point next_keepalive_{};
};

// For socket activation: checks that `fd` is an open, listening stream socket of family AF_UNIX,
// AF_INET or AF_INET6 and returns the endpoint it serves ("ipc:///run/zayad/zayad.sock",
// "ipc://@abstract", "tcp://127.0.0.1:5555", "tcp://[::1]:5555"). kInvalidArgument saying what
// the fd is otherwise (not open, not a socket, a datagram socket, not listening, another family).
Result<std::string> ListenFdEndpoint(int fd);

// "ab\x01" -> "616201": how identities appear in engine ids, logs and metrics.
std::string HexIdentity(std::string_view identity);

}  // namespace zaya::ipc
