// The engine as the daemon sees it: submit a request, receive its events, cancel it, read status.
// The daemon (ipc/, daemon/) depends only on this header; the real implementation lives in
// engine/scheduler and engine/rsa. Tests of the daemon may put a double behind this interface; the
// shipped zayad binary always wires the real engine.
//
// Threading: Submit/Cancel/Status may be called from any thread. Events are delivered on the
// engine's own thread through EventSink::OnEvent, which must not block (queue and return). For one
// request, events arrive in order and end with exactly one terminal event (`done` or `error`).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace zaya {

struct SamplingParams {
  int max_tokens = 256;
  double temperature = 1.0;  // 0 = greedy
  int top_k = 0;             // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  uint64_t seed = 0;
  std::vector<std::string> stop;  // stop strings (the stop text is not included in the output)
};

// Overrides for `solve`; unset fields take the [rsa] defaults from the config.
struct SolveParams {
  std::optional<std::string> mode;  // "single" | "parallel" | "rsa"
  std::optional<int> population, subset, rounds, tail, budget;
  std::optional<double> temperature, top_p;
  std::optional<uint64_t> seed;
  std::optional<int64_t> deadline_ms;  // wall-clock budget from acceptance
  std::optional<int> stream_member;    // stream this member's text as `delta` events
};

struct EngineRequest {
  enum class Kind { kGenerate, kSolve };
  Kind kind = Kind::kGenerate;
  std::string id;      // unique within the engine (the daemon prefixes the client's id)
  std::string client;  // who asked; per-client limits and disconnect cancellation key on it
  // Either chat messages ([{"role":..,"content":..}], rendered with the model's template) or a raw
  // prompt (tokenized as is, with BOS but not a post-processor suffix: Tokenizer::AddSpecial::
  // kPrefix). Exactly one is set; ipc/ validates before submitting.
  nlohmann::json messages;
  std::optional<std::string> prompt;
  bool enable_thinking = true;
  SamplingParams sampling;
  SolveParams solve;
};

struct EngineEvent {
  enum class Type { kAccepted, kProgress, kDelta, kDone, kError };
  Type type = Type::kProgress;
  // kAccepted: {"queue_position":N}; kProgress: free-form fields (docs/protocol.md);
  // kDelta: {"text":"..."}; kDone: {"text"|"answer", "usage":{...}, "timings":{...}, ...};
  // kError: {"code": StatusCodeName, "message": "..."}.
  nlohmann::json body;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void OnEvent(const std::string& request_id, EngineEvent event) = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // Validates against the engine's limits (context, budgets, queue). Returns an error (and emits no
  // event) when the request is refused outright: kOverBudget, kBusy, kOutOfRange, kInvalidArgument.
  // On Ok, an `accepted` event follows, then progress/delta, then `done` or `error`.
  virtual ::zaya::Status Submit(EngineRequest request, std::shared_ptr<EventSink> sink) = 0;

  // Cancels one request (no-op if unknown or finished). Its memory is free by the next step; its
  // sink receives an `error` event with code "cancelled".
  virtual void Cancel(const std::string& request_id) = 0;

  // Cancels every request of `client` (it disconnected).
  virtual void CancelClient(const std::string& client) = 0;

  // Budgets, their use, queue depth, running sequences, model info (docs/protocol.md `status`).
  virtual nlohmann::json Status() const = 0;

  // Starts refusing new requests; returns when everything in flight has finished or `timeout_ms`
  // passed, after which the rest are cancelled.
  virtual void Drain(int64_t timeout_ms) = 0;

  // True while the scheduler loop makes progress (for the systemd watchdog).
  virtual bool Healthy() const = 0;
};

}  // namespace zaya
