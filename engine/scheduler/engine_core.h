// EngineCore: the real Engine (engine/engine.h). It owns the loaded model and everything around it:
// the backend, the checkpoint, the tokenizer and chat template, the KV block pool, and one
// scheduler thread that runs continuous batching over all requests.
//
// Scheduling: each step mixes one decode token of every decoding sequence with bounded prompt
// chunks (scheduler.prefill_chunk per sequence, scheduler.max_step_tokens per step), taking prompt
// chunks round-robin over sequences so one long prompt cannot starve the others. Cancellation and
// deadlines take effect at the next step.
//
// Memory: the pool is sized from memory.state. Every sequence reserves, when it starts, the blocks
// its worst case may still need (prompt + max new tokens, plus one block for a copy-on-write), so a
// started sequence can never run out of blocks mid-generation; a request whose single worst-case
// sequence exceeds memory.request or the whole pool is rejected with kOverBudget at Submit; others
// wait (a full queue answers kBusy) or run their members in waves.
//
// Requests are Tasks (engine/scheduler/task.h): GenerateTask for `generate`, RsaTask
// (engine/rsa/rsa_task.h) for `solve`. Tasks run only on the scheduler thread.
//
// Thread safety: Engine methods may be called from any thread; everything else happens on the
// scheduler thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "engine/chat/chat_template.h"
#include "engine/engine.h"
#include "engine/model/zaya_model.h"
#include "engine/sampler/sampler.h"
#include "engine/sampler/stop_checker.h"
#include "engine/state/kv_block_pool.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/weights/checkpoint.h"
#include "plugins/loader.h"

namespace zaya {

class Task;

// One token stream in the KV pool: a prompt to prefill, then sampled tokens.
struct Sequence {
  Task* owner = nullptr;
  int member = 0;  // index within its task (RSA member), 0 for generate
  SeqId pool_id = 0;
  int32_t slot = 0;
  std::vector<int32_t> pending;  // tokens not yet run through the model
  int64_t cached = 0;            // tokens already in the KV cache
  int64_t max_total_tokens = 0;  // prompt + max new tokens (for reservations)
  int64_t reserved_blocks = 0;   // blocks still reserved for this sequence's worst case
  int64_t committed_blocks = 0;  // its whole worst case (counts against memory.request)
  bool prefill_only = false;     // after the prompt: hand logits to the task, do not sample
  bool stream = false;           // emit `delta` events for this sequence's text
  bool finished = false;
  std::vector<int32_t> generated;  // sampled tokens (stop token excluded)
  std::string text;                // released text
  FinishReason finish = FinishReason::kNone;
  std::optional<Sampler> sampler;
  std::optional<StopChecker> stop;
  std::optional<Tokenizer::StreamDecoder> decoder;
  std::chrono::steady_clock::time_point first_token_at{};
};

struct SequenceSpec {
  std::vector<int32_t> prompt;
  SamplingParams sampling;  // max_tokens, temperature, top_p, ..., seed, stop strings
  bool prefill_only = false;
  bool stream = false;
};

class EngineCore final : public Engine {
 public:
  // Loads the model named by config.model onto the configured backend and starts the scheduler.
  static Result<std::unique_ptr<EngineCore>> Create(const Config& config);
  ~EngineCore() override;

  ::zaya::Status Submit(EngineRequest request, std::shared_ptr<EventSink> sink) override;
  void Cancel(const std::string& request_id) override;
  void CancelClient(const std::string& client) override;
  nlohmann::json Status() const override;
  void Drain(int64_t timeout_ms) override;
  bool Healthy() const override;

  // Applies the live-changeable parts of a reloaded config (rsa defaults and limits, queue length).
  void Reconfigure(const Config& config);

  // The tokenizer's ids for `text`, refused (InvalidArgument, naming the token) when one has no
  // row in the model's embedding: a tokenizer.json with added tokens the checkpoint was not
  // resized for. Unchecked, such an id failed the forward step of every request in the batch.
  // Every prompt goes through here. Any thread (the tokenizer is immutable): Submit encodes on the
  // caller's, aggregation rounds on the scheduler's.
  // Raw prompts take Tokenizer::AddSpecial::kPrefix (BOS only), rendered chat prompts kNone.
  Result<std::vector<int32_t>> Encode(std::string_view text,
                                      Tokenizer::AddSpecial add_special) const;

  // --- For tasks, on the scheduler thread only. ---
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ChatTemplate* chat_template() const { return chat_.get(); }
  const Config& config() const { return config_; }
  const ZayaConfig& model_config() const { return checkpoint_->config(); }
  int64_t max_context() const { return max_context_; }
  std::vector<int32_t> stop_tokens() const { return stop_tokens_; }
  KvBlockPool& pool() { return *pool_; }
  // Blocks a sequence of `max_total_tokens` reserves at start.
  int64_t WorstCaseBlocks(int64_t max_total_tokens) const;
  // Whether a sequence of that worst case can start now within the pool and `task`'s request
  // budget.
  bool CanStart(const Task& task, int64_t max_total_tokens) const;
  Result<Sequence*> StartSequence(Task& task, int member, SequenceSpec spec);
  // A sequence sharing `parent`'s KV blocks and CCA state, then decoding under `spec` (its prompt
  // must be empty: it continues from the parent's logits, given with AcceptLogits).
  Result<Sequence*> ForkSequence(Sequence& parent, int member, SequenceSpec spec);
  // Samples the next token of `seq` from `logits` (normally done by the scheduler itself).
  void AcceptLogits(Sequence& seq, std::span<const float> logits);
  void FreeSequence(Sequence& seq);
  // Whether a sequence of another task is still prefilling or decoding (its end will make room).
  bool SequencesRunningBesides(const Task& task) const;
  // The scheduler's clock for deadlines; tests may replace it (before submitting anything).
  std::chrono::steady_clock::time_point Now() const {
    return clock_ ? clock_() : std::chrono::steady_clock::now();
  }
  void SetClockForTesting(std::function<std::chrono::steady_clock::time_point()> clock) {
    clock_ = std::move(clock);
  }
  void Emit(Task& task, EngineEvent event);
  uint64_t task_blocks(const Task& task) const;

 private:
  EngineCore() = default;
  void Loop();
  void Step();
  void AdmitWaiting();
  void ApplyCancels();
  void FinishTask(Task& task);
  void UpdateSnapshot();
  // Emits a finished task's held terminal event and counts the request as no longer in flight.
  void EmitTerminal(Task& task);
  Result<std::unique_ptr<Task>> MakeTask(EngineRequest request, std::shared_ptr<EventSink> sink);

  Config config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ZayaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_;
  std::optional<KvBlockPool> pool_;
  std::vector<int32_t> stop_tokens_;
  int64_t max_context_ = 0;
  uint64_t block_bytes_ = 0;
  uint64_t slot_bytes_ = 0;
  // The pool's fixed size, for Submit on the callers' threads: the pool itself is the scheduler
  // thread's, and reading its live counters from another thread was a data race.
  int64_t pool_blocks_total_ = 0;

  // Shared with other threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Task>> waiting_;  // accepted, not started (FIFO)
  std::vector<std::string> cancel_ids_;
  std::vector<std::string> cancel_clients_;
  std::map<std::string, int> per_client_;  // live requests per client
  bool draining_ = false;
  int64_t inflight_ = 0;  // accepted requests whose terminal event has not been emitted yet
  bool stop_ = false;
  nlohmann::json snapshot_;
  int max_queue_ = 64;
  RsaConfig rsa_config_;  // live-reloadable copy, read by Submit
  std::atomic<int64_t> heartbeat_ns_{0};

  // Scheduler thread only.
  std::list<std::unique_ptr<Task>> running_;
  std::list<Sequence> sequences_;
  int64_t reserved_blocks_ = 0;
  size_t prefill_cursor_ = 0;
  uint64_t steps_ = 0;
  uint64_t tokens_generated_ = 0;
  uint64_t tokens_prefilled_ = 0;
  std::vector<float> logits_;
  std::function<std::chrono::steady_clock::time_point()> clock_;
  std::thread thread_;
};

}  // namespace zaya
