#include "ipc/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "base/log.h"

namespace zaya::ipc {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Engine events cross from the engine thread to the loop thread here. The eventfd is written only
// when the queue goes from empty to non-empty: the loop clears the eventfd before it takes the
// items, so while items are queued a wake-up is always outstanding, and a burst of events (one per
// running request per decode step) costs one wake-up instead of one each.
class EventQueue {
 public:
  using Item = std::pair<std::string, EngineEvent>;

  EventQueue() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~EventQueue() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }

  void Push(std::string request_id, EngineEvent event) {
    bool was_empty = false;
    {
      std::lock_guard lock(mu_);
      was_empty = items_.empty();
      items_.emplace_back(std::move(request_id), std::move(event));
      queued_.store(true, std::memory_order_release);
    }
    if (was_empty) Wake();
  }
  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof one);
  }
  // True when items are queued (a hint for the loop; TakeAll is the authority).
  bool Queued() const { return queued_.load(std::memory_order_acquire); }
  // Replaces *out with everything queued. Swapping vectors hands the consumer's old buffer back to
  // the queue, so steady streaming allocates no queue storage.
  void TakeAll(std::vector<Item>* out) {
    uint64_t count = 0;
    [[maybe_unused]] ssize_t n = read(fd_, &count, sizeof count);
    out->clear();
    std::lock_guard lock(mu_);
    out->swap(items_);
    queued_.store(false, std::memory_order_release);
  }

 private:
  int fd_;
  std::mutex mu_;
  std::vector<Item> items_;
  std::atomic<bool> queued_{false};
};

namespace {

class QueueSink : public EventSink {
 public:
  explicit QueueSink(std::shared_ptr<EventQueue> queue) : queue_(std::move(queue)) {}
  void OnEvent(const std::string& request_id, EngineEvent event) override {
    queue_->Push(request_id, std::move(event));
  }

 private:
  std::shared_ptr<EventQueue> queue_;
};

Status ZmqError(std::string_view what) {
  return Unavailable(std::string(what) + ": " + zmq_strerror(zmq_errno()));
}

template <typename T>
Status SetOption(void* socket, int option, T value, std::string_view name) {
  if (zmq_setsockopt(socket, option, &value, sizeof value) != 0) {
    return ZmqError("setting " + std::string(name));
  }
  return Status::Ok();
}

// For ipc:// endpoints: the filesystem path, or "" for abstract sockets and other transports.
std::string IpcPath(const std::string& endpoint) {
  constexpr std::string_view kPrefix = "ipc://";
  if (endpoint.rfind(kPrefix, 0) != 0) return "";
  std::string path = endpoint.substr(kPrefix.size());
  if (!path.empty() && path[0] == '@') return "";
  return path;
}

bool SomeoneListensOn(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return connected;
}

uint64_t CompletionTokens(const json& body) {
  auto usage = body.find("usage");
  if (usage == body.end() || !usage->is_object()) return 0;
  for (const char* key : {"completion_tokens", "output_tokens", "generated_tokens"}) {
    auto it = usage->find(key);
    if (it != usage->end() && it->is_number_integer() && it->get<int64_t>() >= 0) {
      return it->get<uint64_t>();
    }
  }
  return 0;
}

}  // namespace

Result<std::string> ListenFdEndpoint(int fd) {
  const std::string which = "file descriptor " + std::to_string(fd);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    return InvalidArgument(which + " is not open (" + std::strerror(errno) + ")");
  }
  if (!S_ISSOCK(st.st_mode)) return InvalidArgument(which + " is not a socket");
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    return InvalidArgument(which + " is not a stream socket (use ListenStream=)");
  }
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening == 0) {
    return InvalidArgument(which + " is not a listening socket (Accept=no is required)");
  }
  sockaddr_storage addr{};
  len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return InvalidArgument(which + ": getsockname: " + std::strerror(errno));
  }
  switch (addr.ss_family) {
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&addr);
      const size_t path_len =
          len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (path_len == 0) return InvalidArgument(which + " is an unnamed unix socket");
      if (un->sun_path[0] == '\0') {  // abstract namespace
        return "ipc://@" + std::string(un->sun_path + 1, path_len - 1);
      }
      return "ipc://" + std::string(un->sun_path, strnlen(un->sun_path, path_len));
    }
    case AF_INET:
    case AF_INET6: {
      char host[INET6_ADDRSTRLEN] = {};
      uint16_t port = 0;
      if (addr.ss_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        return "tcp://" + std::string(host) + ":" + std::to_string(port);
      }
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
      inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      port = ntohs(in6->sin6_port);
      return "tcp://[" + std::string(host) + "]:" + std::to_string(port);
    }
    default:
      return InvalidArgument(which + " has address family " + std::to_string(addr.ss_family) +
                             "; zayad serves unix (ipc://) and TCP sockets");
  }
}

std::string HexIdentity(std::string_view identity) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(identity.size() * 2);
  for (unsigned char c : identity) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

Server::Server(ServerOptions options, Engine* engine, Metrics* metrics)
    : options_(std::move(options)),
      engine_(engine),
      metrics_(metrics),
      queue_(std::make_shared<EventQueue>()),
      sink_(std::make_shared<QueueSink>(queue_)) {}

Server::~Server() {
  if (socket_ != nullptr) {
    // The daemon closes the socket right after its last terminal events (a drain's) were handed to
    // libzmq; frames queued but not yet written were then lost about one time in three in a test,
    // with linger 0 and also with a linger. Closing no sooner than 200 ms after the last send lets
    // the I/O thread write them; the linger bounds what is still queued after that.
    const auto since = Clock::now() - last_send_;
    if (since < kCloseGrace) std::this_thread::sleep_for(kCloseGrace - since);
    const int linger_ms = 1000;
    zmq_setsockopt(socket_, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(socket_);
  }
  if (context_ != nullptr) zmq_ctx_term(context_);
}

Result<std::unique_ptr<Server>> Server::Create(ServerOptions options, Engine* engine,
                                               Metrics* metrics) {
  std::unique_ptr<Server> server(new Server(std::move(options), engine, metrics));
  if (server->queue_->fd() < 0) {
    return Internal(std::string("eventfd: ") + std::strerror(errno));
  }
  ZAYA_RETURN_IF_ERROR(server->Bind());
  return server;
}

Status Server::Bind() {
  const IpcConfig& ipc = options_.ipc;
  context_ = zmq_ctx_new();
  if (context_ == nullptr) return ZmqError("creating the zmq context");
  socket_ = zmq_socket(context_, ZMQ_ROUTER);
  if (socket_ == nullptr) return ZmqError("creating the ROUTER socket");
  // Frames between max_message and twice that get a readable error reply; larger ones make libzmq
  // drop the connection before the bytes are buffered.
  ZAYA_RETURN_IF_ERROR(SetOption<int64_t>(
      socket_, ZMQ_MAXMSGSIZE, static_cast<int64_t>(ipc.max_message) * 2 + 1024, "ZMQ_MAXMSGSIZE"));
  bound_max_message_ = ipc.max_message;
  ZAYA_RETURN_IF_ERROR(SetOption<int>(socket_, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY"));
  ZAYA_RETURN_IF_ERROR(SetOption<int>(socket_, ZMQ_LINGER, 0, "ZMQ_LINGER"));
  ZAYA_RETURN_IF_ERROR(SetOption<int>(socket_, ZMQ_SNDHWM, ipc.send_hwm, "ZMQ_SNDHWM"));
  ZAYA_RETURN_IF_ERROR(SetOption<int>(socket_, ZMQ_RCVHWM, ipc.send_hwm, "ZMQ_RCVHWM"));
  ZAYA_RETURN_IF_ERROR(SetOption<int>(socket_, ZMQ_HEARTBEAT_IVL,
                                      static_cast<int>(ipc.heartbeat_interval.count()),
                                      "ZMQ_HEARTBEAT_IVL"));
  ZAYA_RETURN_IF_ERROR(SetOption<int>(socket_, ZMQ_HEARTBEAT_TIMEOUT,
                                      static_cast<int>(ipc.heartbeat_timeout.count()),
                                      "ZMQ_HEARTBEAT_TIMEOUT"));
  // The endpoint to bind; for an adopted fd its own address, so endpoint() names what clients use.
  std::string bind_endpoint = ipc.endpoint;
  if (options_.listen_fd >= 0) {
    ZAYA_ASSIGN_OR_RETURN(bind_endpoint, ListenFdEndpoint(options_.listen_fd));
    ZAYA_RETURN_IF_ERROR(SetOption<int>(socket_, ZMQ_USE_FD, options_.listen_fd, "ZMQ_USE_FD"));
  }
  const std::string path = options_.listen_fd >= 0 ? "" : IpcPath(ipc.endpoint);
  if (!path.empty()) {
    std::error_code ec;
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) {
      return Unavailable("cannot create " + parent.string() + " for " + ipc.endpoint + ": " +
                         ec.message() + "; create it or pick another ipc.endpoint");
    }
    if (SomeoneListensOn(path)) {
      return Unavailable("another process is already serving " + ipc.endpoint +
                         "; stop it or pick another ipc.endpoint");
    }
  }
  if (zmq_bind(socket_, bind_endpoint.c_str()) != 0) {
    if (options_.listen_fd >= 0) {
      return ZmqError("adopting the socket passed by systemd (" + bind_endpoint + ")");
    }
    return ZmqError("binding " + ipc.endpoint).WithContext("ipc.endpoint");
  }
  if (!path.empty() && chmod(path.c_str(), 0660) != 0) {
    return Unavailable("chmod 0660 " + path + ": " + std::strerror(errno));
  }
  char last[1024] = {};
  size_t last_len = sizeof last;
  if (zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, last, &last_len) == 0 && last[0] != '\0') {
    endpoint_ = last;
  } else {
    endpoint_ = bind_endpoint;
  }
  return Status::Ok();
}

void Server::WatchFd(int fd, std::function<void()> on_readable) {
  watched_.emplace_back(fd, std::move(on_readable));
  poll_items_.clear();  // rebuilt by the next RunOnce
}

void Server::SetTick(std::chrono::milliseconds period, std::function<void()> fn) {
  tick_period_ = period;
  tick_ = std::move(fn);
  next_tick_ = Clock::now();
}

void Server::StopAccepting(std::string reason) {
  accepting_ = false;
  refuse_reason_ = std::move(reason);
}

void Server::UpdateLimits(const ProtocolLimits& limits, int max_requests_per_client) {
  ProtocolLimits applied = limits;
  // libzmq's own frame cap was fixed when the socket was bound (its listener keeps a copy of the
  // options), at twice the max_message of that time. A larger limit would be advertised by
  // `hello` while libzmq dropped, without a reply, the connection of anyone using it, so a raise
  // past the bound value waits for a restart.
  if (applied.max_message > bound_max_message_) {
    ZAYA_LOG(kWarning,
             "reload: ipc.max_message " + std::to_string(applied.max_message) + " is above the " +
                 std::to_string(bound_max_message_) + " bytes the socket was bound with; keeping " +
                 std::to_string(bound_max_message_) + " until a restart (systemctl restart zayad)");
    applied.max_message = bound_max_message_;
  }
  options_.limits = applied;
  options_.ipc.max_requests_per_client = max_requests_per_client;
}

void Server::Stop() {
  stop_ = true;
  queue_->Wake();
}

Status Server::Run() {
  while (!stop_) {
    ZAYA_RETURN_IF_ERROR(RunOnce(std::chrono::milliseconds(1000)));
  }
  // Events queued before Stop() (the drain's last terminal events) still go out.
  DispatchEngineEvents();
  return Status::Ok();
}

Status Server::RunOnce(std::chrono::milliseconds timeout) {
  const auto now = Clock::now();
  auto wait = timeout;
  if (tick_) {
    wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(next_tick_ - now));
  }
  if (deadlines_ > 0) wait = std::min(wait, std::chrono::milliseconds(10));
  if (!requests_.empty()) {
    wait = std::min(wait,
                    std::chrono::duration_cast<std::chrono::milliseconds>(next_keepalive_ - now));
  }
  if (wait.count() < 0) wait = std::chrono::milliseconds(0);

  // Engine events already queued (e.g. produced while the loop handled input) need no wait.
  if (queue_->Queued()) wait = std::chrono::milliseconds(0);

  if (poll_items_.empty()) {
    poll_items_.push_back({socket_, 0, ZMQ_POLLIN, 0});
    poll_items_.push_back({nullptr, queue_->fd(), ZMQ_POLLIN, 0});
    for (const auto& [fd, cb] : watched_) poll_items_.push_back({nullptr, fd, ZMQ_POLLIN, 0});
  }
  for (auto& item : poll_items_) item.revents = 0;
  if (zmq_poll(poll_items_.data(), static_cast<int>(poll_items_.size()), wait.count()) < 0) {
    if (zmq_errno() == EINTR) return Status::Ok();
    return ZmqError("zmq_poll");
  }
  if (poll_items_[0].revents & ZMQ_POLLIN) ReceiveAll();
  // Also when the eventfd was not yet readable at poll time: an event queued meanwhile (a request
  // accepted just now) goes out in this iteration instead of costing another poll.
  if ((poll_items_[1].revents & ZMQ_POLLIN) || queue_->Queued()) DispatchEngineEvents();
  for (size_t i = 0; i < watched_.size(); ++i) {
    if (poll_items_[i + 2].revents & ZMQ_POLLIN) watched_[i].second();
  }
  const auto after = Clock::now();
  if (tick_ && after >= next_tick_) {
    next_tick_ = after + tick_period_;
    tick_();
  }
  if (deadlines_ > 0) ExpireDeadlines();
  if (after >= next_keepalive_) {
    next_keepalive_ = after + options_.ipc.heartbeat_interval;
    SendKeepalives();
  }
  return Status::Ok();
}

void Server::ReceiveAll() {
  zmq_msg_t identity_msg, part, first;
  zmq_msg_init(&identity_msg);
  zmq_msg_init(&part);
  zmq_msg_init(&first);
  // Bounded so a flood from one client cannot starve engine events and signals.
  for (int budget = 0; budget < 512; ++budget) {
    if (zmq_msg_recv(&identity_msg, socket_, ZMQ_DONTWAIT) < 0) break;
    // Read the whole message even when it has extra frames, so the next one starts clean. The
    // first body frame is kept as a zmq message and handled in place (no copy).
    int frames = 0;
    bool more = zmq_msg_more(&identity_msg) != 0;
    while (more) {
      zmq_msg_t* into = frames == 0 ? &first : &part;
      if (zmq_msg_recv(into, socket_, 0) < 0) break;
      ++frames;
      more = zmq_msg_more(into) != 0;
    }
    const std::string identity(static_cast<const char*>(zmq_msg_data(&identity_msg)),
                               zmq_msg_size(&identity_msg));
    if (frames != 1) {
      ZAYA_LOG(kDebug, "request with " + std::to_string(frames) + " frames",
               {"CLIENT", HexIdentity(identity)});
      SendError(identity, "", kBadRequest,
                "a request must be exactly one frame of JSON (got " + std::to_string(frames) +
                    "); with a REQ socket use DEALER instead",
                "invalid");
      continue;
    }
    HandleFrame(identity, std::string_view(static_cast<const char*>(zmq_msg_data(&first)),
                                           zmq_msg_size(&first)));
  }
  zmq_msg_close(&first);
  zmq_msg_close(&part);
  zmq_msg_close(&identity_msg);
}

void Server::HandleFrame(const std::string& identity, std::string_view frame) {
  std::string id;
  try {
    Decoded decoded = DecodeRequest(frame, options_.limits);
    id = decoded.id;
    if (!decoded.ok()) {
      ZAYA_LOG(kDebug, "bad request: " + decoded.error_message, {"CLIENT", HexIdentity(identity)},
               {"REQUEST_ID", decoded.id});
      SendError(identity, decoded.id, decoded.error_code, decoded.error_message, "invalid");
      return;
    }
    HandleRequest(identity, std::move(decoded.request));
  } catch (const std::exception& e) {
    ZAYA_LOG(kErr, std::string("request handling failed: ") + e.what(),
             {"CLIENT", HexIdentity(identity)}, {"REQUEST_ID", id});
    SendError(identity, id, StatusCodeName(StatusCode::kInternal),
              std::string("zayad failed to handle the request: ") + e.what(), "invalid");
  } catch (...) {
    SendError(identity, id, StatusCodeName(StatusCode::kInternal),
              "zayad failed to handle the request", "invalid");
  }
}

void Server::HandleRequest(const std::string& identity, Request request) {
  const std::string op(OpName(request.op));
  auto reply_done = [&](json body) {
    metrics_->CountRequest(op, "ok");
    SendTo(identity, EncodeEvent(request.id, EngineEvent::Type::kDone, body));
  };
  const std::string client_key = HexIdentity(identity);
  switch (request.op) {
    case Op::kHello: {
      json body = options_.hello.is_object() ? options_.hello : json::object();
      body["protocol"] = json::array({kProtocolVersion});
      body["limits"] = {{"max_message", options_.limits.max_message},
                        {"max_json_depth", options_.limits.max_json_depth},
                        {"max_requests_per_client", options_.ipc.max_requests_per_client},
                        {"max_tokens", options_.limits.max_tokens},
                        {"max_population", options_.limits.max_population},
                        {"max_rounds", options_.limits.max_rounds},
                        {"max_tail", options_.limits.max_tail},
                        {"max_budget", options_.limits.max_budget},
                        {"max_id_bytes", kMaxIdBytes},
                        {"max_stop", kMaxStopStrings}};
      body["heartbeat_interval_ms"] = options_.ipc.heartbeat_interval.count();
      reply_done(std::move(body));
      return;
    }
    case Op::kStatus: {
      json body = json::object();
      json engine_status = engine_->Status();
      if (engine_status.is_object()) body = std::move(engine_status);
      body["ipc"] = {{"requests_in_flight", requests_.size()},
                     {"clients", clients_.size()},
                     {"accepting", accepting_}};
      reply_done(std::move(body));
      return;
    }
    case Op::kHealth: {
      const bool healthy = engine_->Healthy();
      reply_done({{"healthy", healthy && accepting_},
                  {"engine", healthy ? "ok" : "stalled"},
                  {"accepting", accepting_},
                  {"requests_in_flight", requests_.size()}});
      return;
    }
    case Op::kMetrics: {
      PublishGauges();
      reply_done({{"text", metrics_->Render(engine_->Status())}});
      return;
    }
    case Op::kCancel: {
      bool known = false;
      if (auto c = clients_.find(identity); c != clients_.end()) {
        if (auto t = c->second.ids.find(request.cancel_target); t != c->second.ids.end()) {
          known = true;
          engine_->Cancel(t->second);
        }
      }
      reply_done({{"target", request.cancel_target}, {"cancelled", known}});
      return;
    }
    case Op::kGenerate:
    case Op::kSolve:
      break;
  }

  if (!accepting_) {
    SendError(identity, request.id, StatusCodeName(StatusCode::kUnavailable), refuse_reason_, op);
    return;
  }
  Client& client = clients_[identity];
  if (client.ids.count(request.id) > 0) {
    SendError(identity, request.id, StatusCodeName(StatusCode::kInvalidArgument),
              "id '" + request.id + "' is already in flight on this connection; use a new id", op);
    return;
  }
  if (static_cast<int>(client.ids.size()) >= options_.ipc.max_requests_per_client) {
    SendError(identity, request.id, StatusCodeName(StatusCode::kBusy),
              "this client already has " + std::to_string(client.ids.size()) +
                  " requests in flight (ipc.max_requests_per_client); wait for one to finish",
              op);
    // Not through `client`: a failed send erases the entry (ClientGone) and leaves it dangling.
    auto c = clients_.find(identity);
    if (c != clients_.end() && c->second.ids.empty()) clients_.erase(c);
    return;
  }
  const std::string engine_id =
      client_key + ":" + request.id + "#" + std::to_string(++submissions_);
  request.engine.id = engine_id;
  request.engine.client = client_key;
  client.ids.emplace(request.id, engine_id);
  client.last_sent = Clock::now();
  Tracked tracked{identity, request.id, request.op, Clock::now(), false, std::nullopt};
  if (request.op == Op::kGenerate && request.engine.solve.deadline_ms) {
    tracked.deadline =
        tracked.received + std::chrono::milliseconds(*request.engine.solve.deadline_ms);
    ++deadlines_;
  }
  requests_[engine_id] = std::move(tracked);
  Status submitted;
  try {
    submitted = engine_->Submit(std::move(request.engine), sink_);
  } catch (const std::exception& e) {
    submitted = Internal(std::string("engine rejected the request: ") + e.what());
  }
  if (!submitted.ok()) {
    Forget(engine_id);
    SendError(identity, request.id, StatusCodeName(submitted.code()), submitted.message(), op);
  }
  PublishGauges();
}

void Server::DispatchEngineEvents() {
  queue_->TakeAll(&events_);
  for (auto& [engine_id, event] : events_) {
    auto it = requests_.find(engine_id);
    if (it == requests_.end()) continue;  // finished, or its client is gone
    Tracked& t = it->second;
    if (event.type == EngineEvent::Type::kDelta && !t.first_delta_seen) {
      t.first_delta_seen = true;
      metrics_->ObserveTimeToFirstToken(
          std::chrono::duration<double>(Clock::now() - t.received).count());
    }
    const std::string identity = t.identity;
    const std::string frame = EncodeEvent(t.client_id, event.type, event.body);
    const bool terminal =
        event.type == EngineEvent::Type::kDone || event.type == EngineEvent::Type::kError;
    if (terminal) {
      std::string outcome = "ok";
      if (event.type == EngineEvent::Type::kError) {
        auto code = event.body.find("code");
        outcome =
            code != event.body.end() && code->is_string() ? code->get<std::string>() : "internal";
      } else {
        metrics_->AddTokens(CompletionTokens(event.body));
      }
      metrics_->CountRequest(OpName(t.op), outcome);
      Forget(engine_id);
    }
    SendTo(identity, frame);
  }
  events_.clear();
  PublishGauges();
}

void Server::SendKeepalives() {
  const auto now = Clock::now();
  std::vector<std::pair<std::string, std::string>> probes;  // identity, client id
  for (const auto& [identity, client] : clients_) {
    if (client.ids.empty() || now - client.last_sent < options_.ipc.heartbeat_interval) continue;
    probes.emplace_back(identity, client.ids.begin()->first);
  }
  for (const auto& [identity, id] : probes) {
    SendTo(identity, EncodeEvent(id, EngineEvent::Type::kProgress, {{"keepalive", true}}));
  }
}

void Server::ExpireDeadlines() {
  const auto now = Clock::now();
  std::vector<std::string> expired;
  for (const auto& [engine_id, t] : requests_) {
    if (t.deadline && now >= *t.deadline) expired.push_back(engine_id);
  }
  for (const auto& engine_id : expired) {
    // An earlier reply of this loop may have found the client gone, and ClientGone then forgot
    // all of its requests, this one included.
    auto it = requests_.find(engine_id);
    if (it == requests_.end()) continue;
    const std::string identity = it->second.identity;
    const std::string id = it->second.client_id;
    const std::string op(OpName(it->second.op));
    Forget(engine_id);  // the engine's later `cancelled` event is dropped
    engine_->Cancel(engine_id);
    SendError(identity, id, StatusCodeName(StatusCode::kDeadlineExceeded),
              "deadline_ms passed before the request finished", op);
  }
}

bool Server::SendTo(const std::string& identity, const std::string& frame) {
  const bool sent =
      zmq_send(socket_, identity.data(), identity.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
      zmq_send(socket_, frame.data(), frame.size(), ZMQ_DONTWAIT) >= 0;
  if (!sent) {
    const int err = zmq_errno();
    ZAYA_LOG(kDebug, std::string("client gone: ") + zmq_strerror(err),
             {"CLIENT", HexIdentity(identity)});
    ClientGone(identity);
    return false;
  }
  last_send_ = Clock::now();
  auto it = clients_.find(identity);
  if (it != clients_.end()) it->second.last_sent = last_send_;
  return true;
}

void Server::SendError(const std::string& identity, std::string_view id, std::string_view code,
                       std::string_view message, std::string_view op) {
  metrics_->CountRequest(op, code);
  SendTo(identity, EncodeError(id, code, message));
}

void Server::ClientGone(const std::string& identity) {
  auto it = clients_.find(identity);
  if (it == clients_.end()) return;
  const std::string key = HexIdentity(identity);
  for (const auto& [id, engine_id] : it->second.ids) {
    auto r = requests_.find(engine_id);
    if (r != requests_.end()) {
      if (r->second.deadline) --deadlines_;
      metrics_->CountRequest(OpName(r->second.op), "disconnected");
      requests_.erase(r);
    }
  }
  clients_.erase(it);
  ZAYA_LOG(kInfo, "client disconnected; cancelling its requests", {"CLIENT", key});
  engine_->CancelClient(key);
  PublishGauges();
}

void Server::Forget(const std::string& engine_id) {
  auto it = requests_.find(engine_id);
  if (it == requests_.end()) return;
  if (it->second.deadline) --deadlines_;
  auto c = clients_.find(it->second.identity);
  if (c != clients_.end()) {
    c->second.ids.erase(it->second.client_id);
    if (c->second.ids.empty()) clients_.erase(c);
  }
  requests_.erase(it);
}

void Server::PublishGauges() {
  metrics_->SetInFlight(static_cast<int64_t>(requests_.size()),
                        static_cast<int64_t>(clients_.size()));
}

}  // namespace zaya::ipc
