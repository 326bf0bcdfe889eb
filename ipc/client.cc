#include "ipc/client.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "ipc/protocol.h"

namespace zaya::ipc {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string DefaultEndpoint() {
  const char* env = std::getenv("ZAYA_ENDPOINT");
  if (env != nullptr && env[0] != '\0') return env;
  return "ipc:///run/zayad/zayad.sock";
}

Client::Client(std::string endpoint, ClientOptions options)
    : endpoint_(std::move(endpoint)), options_(options) {}

Client::~Client() {
  if (socket_ != nullptr) zmq_close(socket_);
  if (context_ != nullptr) zmq_ctx_term(context_);
}

std::string Client::NoDaemon() const {
  return "no zayad at " + endpoint_ + ": is it running? systemctl status zayad";
}

std::string Client::NoPermission(const std::string& path) const {
  return "permission denied on " + path + ": only members of the zayad group may use zayad; " +
         "run `sudo usermod -aG zayad $USER` and log in again (check with `id`)";
}

Result<std::unique_ptr<Client>> Client::Connect(const std::string& endpoint,
                                                ClientOptions options) {
  std::unique_ptr<Client> client(new Client(endpoint, options));
  ZAYA_RETURN_IF_ERROR(client->Open());
  return client;
}

Status Client::Open() {
  constexpr std::string_view kIpc = "ipc://";
  if (endpoint_.rfind(kIpc, 0) == 0 && endpoint_.size() > kIpc.size() &&
      endpoint_[kIpc.size()] != '@') {
    struct stat st {};
    const std::string path = endpoint_.substr(kIpc.size());
    // The installed daemon's socket folder is 0750 zayad:zayad: for a user outside the group the
    // socket is there but out of reach, and "is it running?" would send them to a daemon that
    // runs fine. (connect() on a unix socket needs write permission on it.)
    if (stat(path.c_str(), &st) != 0) {
      if (errno == EACCES) return FailedPrecondition(NoPermission(path));
      return Unavailable(NoDaemon());
    }
    if (!S_ISSOCK(st.st_mode)) return Unavailable(path + " exists but is not a socket");
    if (access(path.c_str(), R_OK | W_OK) != 0 && errno == EACCES) {
      return FailedPrecondition(NoPermission(path));
    }
  }
  context_ = zmq_ctx_new();
  socket_ = context_ != nullptr ? zmq_socket(context_, ZMQ_DEALER) : nullptr;
  if (socket_ == nullptr) return Unavailable(std::string("zmq: ") + zmq_strerror(zmq_errno()));
  const int linger = 0;
  const int immediate = 1;  // queue nothing until connected, so a missing daemon shows on send
  const int send_timeout = static_cast<int>(options_.connect_timeout.count());
  const int64_t max_reply = 256ll << 20;
  zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(socket_, ZMQ_IMMEDIATE, &immediate, sizeof immediate);
  zmq_setsockopt(socket_, ZMQ_SNDTIMEO, &send_timeout, sizeof send_timeout);
  zmq_setsockopt(socket_, ZMQ_MAXMSGSIZE, &max_reply, sizeof max_reply);
  if (zmq_connect(socket_, endpoint_.c_str()) != 0) {
    return InvalidArgument("cannot connect to '" + endpoint_ + "': " + zmq_strerror(zmq_errno()));
  }
  return Status::Ok();
}

std::string Client::NextId() {
  return "c" + std::to_string(getpid()) + "-" + std::to_string(++next_id_);
}

Status Client::SendRaw(std::string_view frame) {
  if (zmq_send(socket_, frame.data(), frame.size(), 0) < 0) {
    if (zmq_errno() == EAGAIN) return Unavailable(NoDaemon());
    return Unavailable("sending to " + endpoint_ + ": " + zmq_strerror(zmq_errno()));
  }
  return Status::Ok();
}

Status Client::Send(const json& request) {
  if (!request.contains("v")) {
    json r = request;
    r["v"] = kProtocolVersion;
    return SendRaw(r.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  return SendRaw(request.dump(-1, ' ', false, json::error_handler_t::replace));
}

Result<json> Client::Receive(std::chrono::milliseconds timeout) {
  // A blocking receive with ZMQ_RCVTIMEO: one wait in libzmq instead of zmq_poll and then a
  // receive, and no wait at all when a streamed event is already queued.
  const int timeout_ms = static_cast<int>(std::max<int64_t>(0, timeout.count()));
  if (timeout_ms != receive_timeout_ms_) {
    zmq_setsockopt(socket_, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    receive_timeout_ms_ = timeout_ms;
  }
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  if (zmq_msg_recv(&msg, socket_, 0) < 0) {
    const int err = zmq_errno();
    zmq_msg_close(&msg);
    // A signal (EINTR) ends the wait early like a timeout, so callers see their interrupt flag.
    if (err == EAGAIN || err == EINTR) {
      return Status(StatusCode::kDeadlineExceeded, "no reply from " + endpoint_ + " within " +
                                                       std::to_string(timeout.count()) + " ms");
    }
    return Unavailable(std::string("receiving: ") + zmq_strerror(err));
  }
  auto event = DecodeEvent(
      std::string_view(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg)));
  zmq_msg_close(&msg);
  return event;
}

Status Client::Cancel(const std::string& id) {
  return Send({{"v", kProtocolVersion}, {"id", NextId()}, {"op", "cancel"}, {"target", id}});
}

Result<json> Client::Request(json request, const EventCallback& on_event,
                             const std::atomic<bool>* interrupt) {
  if (!request.contains("id")) request["id"] = NextId();
  if (!request["id"].is_string()) return InvalidArgument("request 'id' must be a string");
  if (!request.contains("v")) request["v"] = kProtocolVersion;
  const std::string id = request["id"].get<std::string>();
  ZAYA_RETURN_IF_ERROR(Send(request));
  bool cancel_sent = false;
  auto last_event = Clock::now();
  constexpr auto kSlice = std::chrono::milliseconds(100);
  while (true) {
    if (interrupt != nullptr && *interrupt && !cancel_sent) {
      ZAYA_RETURN_IF_ERROR(Cancel(id));
      cancel_sent = true;
    }
    auto event = Receive(kSlice);
    if (!event.ok()) {
      if (event.status().code() != StatusCode::kDeadlineExceeded) return event.status();
      if (Clock::now() - last_event > options_.silence_timeout) {
        return Status(StatusCode::kDeadlineExceeded,
                      "zayad at " + endpoint_ + " sent nothing for " +
                          std::to_string(options_.silence_timeout.count()) +
                          " ms; is it running? systemctl status zayad");
      }
      continue;
    }
    last_event = Clock::now();
    const json& e = *event;
    auto eid = e.find("id");
    if (eid == e.end() || !eid->is_string()) continue;
    // The server answers "id":"" when it could not read the id (a frame over ipc.max_message, an
    // id it refuses): with one request at a time that error is this request's answer, and waiting
    // for one that names our id would end only at silence_timeout, as "is it running?".
    const std::string& got = eid->get_ref<const std::string&>();
    if (got != id && !(got.empty() && e.value("event", "") == "error")) continue;
    if (e.value("keepalive", false)) continue;
    if (on_event) on_event(e);
    if (IsTerminalEvent(e)) return *event;
  }
}

}  // namespace zaya::ipc
