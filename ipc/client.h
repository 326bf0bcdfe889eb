// C++ client for zayad's protocol v1 (a ZeroMQ DEALER). Used by the `zaya` CLI, the tests and the
// benchmarks; any other language can follow docs/protocol.md instead.
//
// Usage:
//   ZAYA_ASSIGN_OR_RETURN(auto client, Client::Connect("ipc:///run/zayad/zayad.sock"));
//   auto done = client->Request({{"op", "generate"}, {"prompt", "Hi"}},
//                               [](const json& e) { if (e["event"] == "delta") ...; });
//
// Errors: transport problems (no daemon, timeout) are a Status; a request the daemon refused is a
// successful Result holding the terminal `error` event.
//
// Thread safety: one Client per thread. Ownership: the Client owns its zmq context and socket.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"

namespace zaya::ipc {

struct ClientOptions {
  // How long the first send may wait for a connection before "no zayad at ...".
  std::chrono::milliseconds connect_timeout{2000};
  // The longest silence Request() accepts between two events of its request. The daemon sends a
  // keepalive at least every heartbeat_interval while a request runs, so this can stay short.
  std::chrono::milliseconds silence_timeout{60000};
};

// The ZAYA_ENDPOINT environment variable, else ipc:///run/zayad/zayad.sock.
std::string DefaultEndpoint();

class Client {
 public:
  using EventCallback = std::function<void(const nlohmann::json& event)>;

  // Connects a DEALER to `endpoint`. Fails with kUnavailable and a "no zayad at ...: is it
  // running?" message when an ipc:// socket file does not exist (other transports fail on first
  // send).
  static Result<std::unique_ptr<Client>> Connect(const std::string& endpoint,
                                                 ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  // Sends one request as is, adding "v":1 when missing. `id` must be set.
  Status Send(const nlohmann::json& request);
  // Sends raw bytes as one frame (tests and fuzzing of the server).
  Status SendRaw(std::string_view frame);
  // The next event of any request, waiting up to `timeout`; kDeadlineExceeded when none came
  // (also when a signal interrupted the wait).
  Result<nlohmann::json> Receive(std::chrono::milliseconds timeout);

  // Sends `request` (adding "v":1 and a fresh "id" when missing) and passes each of its events to
  // `on_event` (keepalives excluded) until the terminal one, which it returns. Events of other ids
  // are dropped. When `*interrupt` becomes true a `cancel` is sent and the wait continues for the
  // terminal event (then normally `error` "cancelled"). An error with "id":"" (the server could not
  // read the request's id) counts as this request's answer, so after a Request that failed (timed
  // out, say), use a new Client: a late answer to it would be taken for the next one's.
  Result<nlohmann::json> Request(nlohmann::json request, const EventCallback& on_event = {},
                                 const std::atomic<bool>* interrupt = nullptr);

  // Asks the daemon to cancel request `id` (fire and forget; its `done` reply is dropped by
  // Request).
  Status Cancel(const std::string& id);

  // "c<pid>-<counter>": unique within this process.
  std::string NextId();

 private:
  Client(std::string endpoint, ClientOptions options);
  Status Open();
  std::string NoDaemon() const;
  std::string NoPermission(const std::string& path) const;

  std::string endpoint_;
  ClientOptions options_;
  void* context_ = nullptr;
  void* socket_ = nullptr;
  uint64_t next_id_ = 0;
  int receive_timeout_ms_ = -1;  // the ZMQ_RCVTIMEO last set
};

}  // namespace zaya::ipc
