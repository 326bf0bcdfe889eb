#include "ipc/protocol.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <optional>

#include "base/json_depth.h"

namespace zaya::ipc {
namespace {

using nlohmann::json;

struct Error {
  std::string_view code;
  std::string message;
};

Error BadRequest(std::string m) { return {kBadRequest, std::move(m)}; }
Error OutOfRangeValue(std::string m) {
  return {StatusCodeName(StatusCode::kInvalidArgument), std::move(m)};
}

std::string Quote(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, 64));
  if (s.size() > 64) out += "...";
  out += "'";
  return out;
}

std::string Shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 40) + "...";
  return s;
}

std::string FormatNumber(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", d);
  return buf;
}

// Reads and range-checks the fields of one request object. Each Get* returns the error of the first
// problem; callers stop at the first error so the reply names one field.
class Fields {
 public:
  explicit Fields(const json& obj) : obj_(obj) {}

  const json* Find(std::string_view name) const {
    auto it = obj_.find(name);
    return it == obj_.end() ? nullptr : &*it;
  }

  std::optional<Error> Int(std::string_view name, int64_t lo, int64_t hi,
                           std::optional<int64_t>* out) const {
    const json* v = Find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) {
      return BadRequest("field '" + std::string(name) + "' must be an integer (got " + Shown(*v) +
                        ")");
    }
    bool in_range = false;
    int64_t value = 0;
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      in_range = u <= static_cast<uint64_t>(hi) && static_cast<int64_t>(u) >= lo;
      value = in_range ? static_cast<int64_t>(u) : hi;
    } else {
      value = v->get<int64_t>();
      in_range = value >= lo && value <= hi;
    }
    if (!in_range) {
      return OutOfRangeValue("field '" + std::string(name) + "' must be between " +
                             std::to_string(lo) + " and " + std::to_string(hi) + " (got " +
                             Shown(*v) + ")");
    }
    *out = value;
    return std::nullopt;
  }

  // lo_open: the lower bound itself is not allowed.
  std::optional<Error> Number(std::string_view name, double lo, double hi, bool lo_open,
                              std::optional<double>* out) const {
    const json* v = Find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) {
      return BadRequest("field '" + std::string(name) + "' must be a number (got " + Shown(*v) +
                        ")");
    }
    const double d = v->get<double>();
    if (!std::isfinite(d) || d > hi || d < lo || (lo_open && d == lo)) {
      std::string range = lo_open ? "in (" : "in [";
      range += FormatNumber(lo) + ", " + FormatNumber(hi) + "]";
      return OutOfRangeValue("field '" + std::string(name) + "' must be a number " + range +
                             " (got " + Shown(*v) + ")");
    }
    *out = d;
    return std::nullopt;
  }

  std::optional<Error> Uint64(std::string_view name, std::optional<uint64_t>* out) const {
    const json* v = Find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) {
      return BadRequest("field '" + std::string(name) +
                        "' must be an unsigned 64-bit integer (got " + Shown(*v) + ")");
    }
    if (!v->is_number_unsigned() && v->get<int64_t>() < 0) {
      return OutOfRangeValue("field '" + std::string(name) + "' must not be negative (got " +
                             Shown(*v) + ")");
    }
    *out = v->get<uint64_t>();
    return std::nullopt;
  }

  std::optional<Error> String(std::string_view name, std::optional<std::string>* out) const {
    const json* v = Find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      return BadRequest("field '" + std::string(name) + "' must be a string (got " + Shown(*v) +
                        ")");
    }
    *out = v->get<std::string>();
    return std::nullopt;
  }

  std::optional<Error> Bool(std::string_view name, std::optional<bool>* out) const {
    const json* v = Find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) {
      return BadRequest("field '" + std::string(name) + "' must be true or false (got " +
                        Shown(*v) + ")");
    }
    *out = v->get<bool>();
    return std::nullopt;
  }

  std::optional<Error> OnlyKnown(std::initializer_list<std::string_view> allowed,
                                 std::string_view op) const {
    for (const auto& [key, value] : obj_.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return BadRequest("unknown field " + Quote(key) + " for op '" + std::string(op) + "'");
      }
    }
    return std::nullopt;
  }

 private:
  const json& obj_;
};

#define ZAYA_IPC_CHECK(expr)                       \
  do {                                             \
    if (auto zaya_err_ = (expr)) return zaya_err_; \
  } while (0)

std::optional<Error> ParseMessages(const json& messages, json* out) {
  if (!messages.is_array()) {
    return BadRequest("field 'messages' must be an array of {\"role\", \"content\"} objects");
  }
  if (messages.empty()) return OutOfRangeValue("field 'messages' must not be empty");
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return BadRequest(where + " must be an object with 'role' and 'content'");
    for (const auto& [key, value] : m.items()) {
      if (key != "role" && key != "content") {
        return BadRequest("unknown field " + Quote(key) + " in " + where +
                          "; allowed: role, content");
      }
    }
    auto role = m.find("role");
    auto content = m.find("content");
    if (role == m.end() || content == m.end()) {
      return BadRequest(where + " needs both 'role' and 'content'");
    }
    if (!role->is_string() || !content->is_string()) {
      return BadRequest(where + ".role and .content must be strings");
    }
    const auto& r = role->get_ref<const std::string&>();
    if (r != "system" && r != "user" && r != "assistant") {
      return OutOfRangeValue(where + ".role must be system, user or assistant (got " + Quote(r) +
                             ")");
    }
  }
  *out = messages;
  return std::nullopt;
}

// Fields shared by generate and solve: the input (messages or prompt) and enable_thinking.
std::optional<Error> ParseInput(const Fields& f, EngineRequest* req) {
  const json* messages = f.Find("messages");
  std::optional<std::string> prompt;
  ZAYA_IPC_CHECK(f.String("prompt", &prompt));
  if ((messages != nullptr) == prompt.has_value()) {
    return BadRequest("exactly one of 'messages' or 'prompt' must be given");
  }
  if (messages != nullptr) {
    ZAYA_IPC_CHECK(ParseMessages(*messages, &req->messages));
  } else {
    req->prompt = std::move(prompt);
  }
  std::optional<bool> thinking;
  ZAYA_IPC_CHECK(f.Bool("enable_thinking", &thinking));
  if (thinking) req->enable_thinking = *thinking;
  return std::nullopt;
}

constexpr int64_t kMaxDeadlineMs = 24ll * 3600 * 1000;

std::optional<Error> ParseGenerate(const Fields& f, const ProtocolLimits& limits,
                                   EngineRequest* req) {
  ZAYA_IPC_CHECK(
      f.OnlyKnown({"v", "id", "op", "messages", "prompt", "enable_thinking", "max_tokens",
                   "temperature", "top_k", "top_p", "min_p", "seed", "stop", "deadline_ms"},
                  "generate"));
  req->kind = EngineRequest::Kind::kGenerate;
  ZAYA_IPC_CHECK(ParseInput(f, req));
  SamplingParams& s = req->sampling;
  std::optional<int64_t> i;
  std::optional<double> d;
  std::optional<uint64_t> u;
  ZAYA_IPC_CHECK(f.Int("max_tokens", 1, limits.max_tokens, &i));
  if (i) s.max_tokens = static_cast<int>(*i);
  i.reset();
  ZAYA_IPC_CHECK(f.Number("temperature", 0.0, kMaxTemperature, false, &d));
  if (d) s.temperature = *d;
  d.reset();
  ZAYA_IPC_CHECK(f.Int("top_k", 0, std::numeric_limits<int>::max(), &i));
  if (i) s.top_k = static_cast<int>(*i);
  i.reset();
  ZAYA_IPC_CHECK(f.Number("top_p", 0.0, 1.0, true, &d));
  if (d) s.top_p = *d;
  d.reset();
  ZAYA_IPC_CHECK(f.Number("min_p", 0.0, 1.0, false, &d));
  if (d) s.min_p = *d;
  ZAYA_IPC_CHECK(f.Uint64("seed", &u));
  if (u) s.seed = *u;
  if (const json* stop = f.Find("stop")) {
    if (!stop->is_array()) return BadRequest("field 'stop' must be an array of strings");
    if (stop->size() > kMaxStopStrings) {
      return OutOfRangeValue("field 'stop' has " + std::to_string(stop->size()) +
                             " strings; at most " + std::to_string(kMaxStopStrings) +
                             " are allowed");
    }
    for (const json& e : *stop) {
      if (!e.is_string()) return BadRequest("field 'stop' must be an array of strings");
      const auto& str = e.get_ref<const std::string&>();
      if (str.empty() || str.size() > kMaxStopBytes) {
        return OutOfRangeValue("each stop string must be 1.." + std::to_string(kMaxStopBytes) +
                               " bytes");
      }
      s.stop.push_back(str);
    }
  }
  ZAYA_IPC_CHECK(f.Int("deadline_ms", 1, kMaxDeadlineMs, &i));
  if (i) req->solve.deadline_ms = *i;
  return std::nullopt;
}

std::optional<Error> ParseSolve(const Fields& f, const ProtocolLimits& limits, EngineRequest* req) {
  ZAYA_IPC_CHECK(f.OnlyKnown(
      {"v", "id", "op", "messages", "prompt", "enable_thinking", "mode", "population", "subset",
       "rounds", "tail", "budget", "temperature", "top_p", "seed", "deadline_ms", "stream_member"},
      "solve"));
  req->kind = EngineRequest::Kind::kSolve;
  ZAYA_IPC_CHECK(ParseInput(f, req));
  SolveParams& s = req->solve;
  std::optional<std::string> mode;
  ZAYA_IPC_CHECK(f.String("mode", &mode));
  if (mode) {
    if (*mode != "single" && *mode != "parallel" && *mode != "rsa") {
      return OutOfRangeValue("field 'mode' must be single, parallel or rsa (got " + Quote(*mode) +
                             ")");
    }
    s.mode = std::move(mode);
  }
  std::optional<int64_t> i;
  auto to_int = [](const std::optional<int64_t>& v) -> std::optional<int> {
    if (!v) return std::nullopt;
    return static_cast<int>(*v);
  };
  ZAYA_IPC_CHECK(f.Int("population", 1, limits.max_population, &i));
  s.population = to_int(i);
  i.reset();
  ZAYA_IPC_CHECK(f.Int("subset", 1, limits.max_population, &i));
  s.subset = to_int(i);
  i.reset();
  if (s.population && s.subset && *s.subset > *s.population) {
    return OutOfRangeValue("field 'subset' (" + std::to_string(*s.subset) +
                           ") must not exceed 'population' (" + std::to_string(*s.population) +
                           ")");
  }
  ZAYA_IPC_CHECK(f.Int("rounds", 0, limits.max_rounds, &i));
  s.rounds = to_int(i);
  i.reset();
  ZAYA_IPC_CHECK(f.Int("tail", 1, limits.max_tail, &i));
  s.tail = to_int(i);
  i.reset();
  ZAYA_IPC_CHECK(f.Int("budget", 1, limits.max_budget, &i));
  s.budget = to_int(i);
  i.reset();
  std::optional<double> d;
  ZAYA_IPC_CHECK(f.Number("temperature", 0.0, kMaxTemperature, false, &d));
  s.temperature = d;
  d.reset();
  ZAYA_IPC_CHECK(f.Number("top_p", 0.0, 1.0, true, &d));
  s.top_p = d;
  std::optional<uint64_t> u;
  ZAYA_IPC_CHECK(f.Uint64("seed", &u));
  s.seed = u;
  ZAYA_IPC_CHECK(f.Int("deadline_ms", 1, kMaxDeadlineMs, &i));
  s.deadline_ms = i;
  i.reset();
  ZAYA_IPC_CHECK(f.Int("stream_member", 0, limits.max_population - 1, &i));
  s.stream_member = to_int(i);
  if (s.stream_member && s.population && *s.stream_member >= *s.population) {
    return OutOfRangeValue("field 'stream_member' must be below 'population'");
  }
  // Mirror the solve overrides into the sampling params so a generic engine path sees them too.
  if (s.temperature) req->sampling.temperature = *s.temperature;
  if (s.top_p) req->sampling.top_p = *s.top_p;
  if (s.seed) req->sampling.seed = *s.seed;
  if (s.budget) req->sampling.max_tokens = *s.budget;
  return std::nullopt;
}

std::optional<Error> ParseBody(const json& obj, const ProtocolLimits& limits, Request* out) {
  auto op_it = obj.find("op");
  if (op_it == obj.end()) return BadRequest("missing field 'op'");
  if (!op_it->is_string()) return BadRequest("field 'op' must be a string");
  const auto& op = op_it->get_ref<const std::string&>();
  Fields f(obj);
  static constexpr std::pair<std::string_view, Op> kSimple[] = {{"hello", Op::kHello},
                                                                {"status", Op::kStatus},
                                                                {"health", Op::kHealth},
                                                                {"metrics", Op::kMetrics}};
  for (const auto& [name, value] : kSimple) {
    if (op == name) {
      out->op = value;
      return f.OnlyKnown({"v", "id", "op"}, name);
    }
  }
  if (op == "generate") {
    out->op = Op::kGenerate;
    return ParseGenerate(f, limits, &out->engine);
  }
  if (op == "solve") {
    out->op = Op::kSolve;
    return ParseSolve(f, limits, &out->engine);
  }
  if (op == "cancel") {
    out->op = Op::kCancel;
    ZAYA_IPC_CHECK(f.OnlyKnown({"v", "id", "op", "target"}, "cancel"));
    std::optional<std::string> target;
    ZAYA_IPC_CHECK(f.String("target", &target));
    if (!target) return BadRequest("cancel needs 'target': the id of the request to cancel");
    if (target->empty() || target->size() > kMaxIdBytes) {
      return OutOfRangeValue("field 'target' must be 1.." + std::to_string(kMaxIdBytes) + " bytes");
    }
    out->cancel_target = std::move(*target);
    return std::nullopt;
  }
  return BadRequest("unknown op " + Quote(op) +
                    "; expected hello, generate, solve, cancel, status, health or metrics");
}

#undef ZAYA_IPC_CHECK

}  // namespace

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kHello:
      return "hello";
    case Op::kGenerate:
      return "generate";
    case Op::kSolve:
      return "solve";
    case Op::kCancel:
      return "cancel";
    case Op::kStatus:
      return "status";
    case Op::kHealth:
      return "health";
    case Op::kMetrics:
      return "metrics";
  }
  return "unknown";
}

ProtocolLimits ProtocolLimits::FromConfig(const Config& config) {
  ProtocolLimits l;
  l.max_message = config.ipc.max_message;
  l.max_json_depth = config.ipc.max_json_depth;
  l.max_tokens = config.rsa.max_budget;
  l.max_population = config.rsa.max_population;
  l.max_rounds = config.rsa.max_rounds;
  l.max_tail = config.rsa.max_tail;
  l.max_budget = config.rsa.max_budget;
  return l;
}

Decoded DecodeRequest(std::string_view frame, const ProtocolLimits& limits) {
  Decoded out;
  auto fail = [&out](std::string_view code, std::string message) -> Decoded {
    out.error_code = std::string(code);
    out.error_message = std::move(message);
    return std::move(out);
  };
  if (frame.size() > limits.max_message) {
    return fail(kBadRequest, "message of " + std::to_string(frame.size()) +
                                 " bytes exceeds the limit of " +
                                 std::to_string(limits.max_message) + " bytes (ipc.max_message)");
  }
  if (JsonNestingDepth(frame, limits.max_json_depth) > limits.max_json_depth) {
    return fail(kBadRequest, "JSON nested deeper than " + std::to_string(limits.max_json_depth) +
                                 " levels (ipc.max_json_depth)");
  }
  json obj;
  try {
    obj = json::parse(frame.begin(), frame.end());
  } catch (const json::exception& e) {
    return fail(kBadRequest, std::string("not valid JSON: ") + e.what());
  }
  if (!obj.is_object()) return fail(kBadRequest, "a request must be a JSON object");
  try {
    auto id = obj.find("id");
    if (id == obj.end()) return fail(kBadRequest, "missing field 'id'");
    if (!id->is_string()) return fail(kBadRequest, "field 'id' must be a string");
    const auto& id_str = id->get_ref<const std::string&>();
    if (id_str.empty() || id_str.size() > kMaxIdBytes) {
      return fail(kBadRequest, "field 'id' must be 1.." + std::to_string(kMaxIdBytes) + " bytes");
    }
    out.id = id_str;
    out.request.id = id_str;
    auto v = obj.find("v");
    if (v == obj.end()) return fail(kBadRequest, "missing field 'v' (protocol version; use 1)");
    if (!v->is_number_integer()) return fail(kBadRequest, "field 'v' must be an integer");
    if (!v->is_number_unsigned() || v->get<uint64_t>() != kProtocolVersion) {
      return fail(kUnsupportedVersion,
                  "protocol version " + Shown(*v) + " is not supported; this zayad speaks v1");
    }
    if (auto err = ParseBody(obj, limits, &out.request)) {
      return fail(err->code, std::move(err->message));
    }
  } catch (const std::exception& e) {
    return fail(StatusCodeName(StatusCode::kInternal),
                std::string("unexpected error while validating: ") + e.what());
  }
  return out;
}

std::string_view EventName(EngineEvent::Type type) {
  switch (type) {
    case EngineEvent::Type::kAccepted:
      return "accepted";
    case EngineEvent::Type::kProgress:
      return "progress";
    case EngineEvent::Type::kDelta:
      return "delta";
    case EngineEvent::Type::kDone:
      return "done";
    case EngineEvent::Type::kError:
      return "error";
  }
  return "error";
}

std::string EncodeEvent(std::string_view id, EngineEvent::Type type, const json& body) {
  json out = json::object();
  out["v"] = kProtocolVersion;
  out["id"] = std::string(id);
  out["event"] = std::string(EventName(type));
  if (body.is_object()) {
    for (const auto& [key, value] : body.items()) {
      if (key == "v" || key == "id" || key == "event") continue;
      out[key] = value;
    }
  } else if (!body.is_null()) {
    out["data"] = body;
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string EncodeError(std::string_view id, std::string_view code, std::string_view message) {
  json body = {{"code", std::string(code)}, {"message", std::string(message)}};
  return EncodeEvent(id, EngineEvent::Type::kError, body);
}

Result<json> DecodeEvent(std::string_view frame) {
  json e = json::parse(frame.begin(), frame.end(), nullptr, /*allow_exceptions=*/false);
  if (e.is_discarded() || !e.is_object()) {
    return InvalidArgument("reply is not a JSON object: " + std::string(frame.substr(0, 80)));
  }
  auto ev = e.find("event");
  if (ev == e.end() || !ev->is_string()) {
    return InvalidArgument("reply has no string field 'event'");
  }
  return e;
}

bool IsTerminalEvent(const json& event) {
  auto ev = event.find("event");
  if (ev == event.end() || !ev->is_string()) return false;
  const auto& name = ev->get_ref<const std::string&>();
  return name == "done" || name == "error";
}

}  // namespace zaya::ipc
