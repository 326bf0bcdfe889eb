// Task: one accepted request as the scheduler drives it. Subclasses decide which sequences to start
// and what to do with their output; EngineCore does the batching, sampling and memory accounting.
//
// Lifecycle: constructed on the submitting thread (prompt tokenized and validated there, so
// refusals are synchronous), then owned by the scheduler thread: Start once, Pump every step,
// callbacks as sequences progress, until done() — then EngineCore frees what is left and drops the
// task. Exactly one terminal event (`done` or `error`) is emitted per task, through Finish / Fail.
//
// Thread safety: scheduler thread only (after construction).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"

namespace zaya {

class EngineCore;
struct Sequence;

class Task {
 public:
  Task(std::string id, std::string client, std::shared_ptr<EventSink> sink)
      : id_(std::move(id)),
        client_(std::move(client)),
        sink_(std::move(sink)),
        accepted_at_(std::chrono::steady_clock::now()) {}
  virtual ~Task() = default;

  const std::string& id() const { return id_; }
  const std::string& client() const { return client_; }
  bool done() const { return done_; }

  // Tokens of the largest single sequence this task may run (prompt + new tokens); admission uses
  // it.
  virtual int64_t WorstCaseSequenceTokens() const = 0;
  // Most sequences it would like alive at once (its population).
  virtual int MaxConcurrentSequences() const { return 1; }
  // True while it has sequences it will start from Pump once there is room (an RSA wave's next
  // members): the idle scheduler then looks again at once instead of sleeping.
  virtual bool WantsToStart() const { return false; }
  // When it must have answered, if the engine enforces that (a solve's deadline_ms); a task still
  // queued then is answered deadline_exceeded without starting.
  virtual std::optional<std::chrono::steady_clock::time_point> Deadline() const {
    return std::nullopt;
  }

  virtual void Start(EngineCore& core) = 0;
  // Every step while running: start waiting members when capacity allows, check deadlines.
  virtual void Pump(EngineCore& /*core*/) {}
  // A prefill_only sequence has run its prompt; `logits` are its last position's.
  virtual void OnPrefilled(EngineCore& /*core*/, Sequence& /*seq*/,
                           std::span<const float> /*logits*/) {}
  // Text newly released by a streaming sequence.
  virtual void OnText(EngineCore& /*core*/, Sequence& /*seq*/, std::string_view /*text*/) {}
  // A sequence stopped (stop token/string or max tokens). Its KV memory is freed after this
  // returns.
  virtual void OnFinished(EngineCore& core, Sequence& seq) = 0;

  // Terminal events. Fail with kCancelled for a cancel; the task is done afterwards. The event is
  // held until EngineCore has freed the task's memory, so a client that reads `status` right after
  // `done` sees the memory returned.
  void Finish(EngineCore& core, nlohmann::json body);
  void Fail(EngineCore& core, const Status& status);
  std::optional<EngineEvent> TakeTerminal() {
    auto e = std::move(terminal_);
    terminal_.reset();
    return e;
  }

  std::shared_ptr<EventSink>& sink() { return sink_; }
  std::chrono::steady_clock::time_point accepted_at() const { return accepted_at_; }
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }
  void set_started_at(std::chrono::steady_clock::time_point t) { started_at_ = t; }
  int64_t reserved_blocks = 0;   // blocks its live sequences may still allocate (EngineCore)
  int64_t committed_blocks = 0;  // worst case of its live sequences, for memory.request

 protected:
  double MsSince(std::chrono::steady_clock::time_point t) const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  }

 private:
  std::string id_;
  std::string client_;
  std::shared_ptr<EventSink> sink_;
  std::chrono::steady_clock::time_point accepted_at_;
  std::chrono::steady_clock::time_point started_at_{};
  bool done_ = false;
  std::optional<EngineEvent> terminal_;
};

}  // namespace zaya
