// Protocol v1 codec: turns one client frame into a validated Request, and engine events into reply
// frames. docs/protocol.md is the normative description; this file enforces it.
//
// Everything a client sends is checked here before the engine sees it: frame size, JSON nesting
// depth (by an iterative pre-scan, so a hostile "[[[[..." cannot exhaust the stack), field names
// (unknown ones are rejected by name), field types and value ranges (bounded by the [rsa] and [ipc]
// config limits).
//
// Thread safety: free functions over values; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "config/config.h"
#include "engine/engine.h"

namespace zaya::ipc {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxIdBytes = 128;
inline constexpr size_t kMaxStopStrings = 8;
inline constexpr size_t kMaxStopBytes = 256;

// Error codes that are not Status codes (the rest are StatusCodeName(code)).
inline constexpr std::string_view kBadRequest = "bad_request";                  // malformed input
inline constexpr std::string_view kUnsupportedVersion = "unsupported_version";  // `v` is not 1

enum class Op { kHello, kGenerate, kSolve, kCancel, kStatus, kHealth, kMetrics };
std::string_view OpName(Op op);

// The limits a request is validated against; taken from the config so a reload can change them.
struct ProtocolLimits {
  uint64_t max_message = 1ull << 20;  // bytes of one frame
  int max_json_depth = 32;            // nesting of arrays/objects; the top-level object is depth 1
  int max_tokens = 32768;             // generate.max_tokens (and solve's per-trace budget)
  int max_population = 64;
  int max_rounds = 8;
  int max_tail = 8192;
  int max_budget = 32768;

  static ProtocolLimits FromConfig(const Config& config);
};

// A validated request. `engine` is filled for generate/solve; its `id` and `client` are left empty
// for the server to set (it namespaces ids per client).
struct Request {
  std::string id;
  Op op = Op::kHello;
  EngineRequest engine;
  std::string cancel_target;  // cancel: the id of the caller's request to cancel
};

// The outcome of decoding one frame. On failure `id` holds the request id when one could be read
// (so the error reply can name it), else "".
struct Decoded {
  bool ok() const { return error_code.empty(); }

  std::string id;
  std::string error_code;  // "" on success; kBadRequest, kUnsupportedVersion or a StatusCodeName
  std::string error_message;
  Request request;
};

// Decodes and validates one frame. Never throws.
Decoded DecodeRequest(std::string_view frame, const ProtocolLimits& limits);

// One reply frame: {"v":1,"id":ID,"event":NAME, ...body}. Body fields named v/id/event are dropped.
// Invalid UTF-8 in body strings (e.g. a delta that split a character) is replaced with U+FFFD.
std::string EncodeEvent(std::string_view id, EngineEvent::Type type, const nlohmann::json& body);
std::string EncodeError(std::string_view id, std::string_view code, std::string_view message);

std::string_view EventName(EngineEvent::Type type);

// Parses one reply frame (for clients). Rejects frames that are not objects with a string `event`.
Result<nlohmann::json> DecodeEvent(std::string_view frame);

// True for `done` and `error`: the last event of a request.
bool IsTerminalEvent(const nlohmann::json& event);

}  // namespace zaya::ipc
