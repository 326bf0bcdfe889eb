// RsaTask: the `solve` op, Markovian RSA run inside the engine (RSA.md, docs/rsa.md).
//
//   round 0    the question is prefilled ONCE (a prefill-only parent sequence); N members are
//   forked
//              from it (sharing its KV blocks, copying its small CCA state) and each samples its
//              own first token from the parent's logits with its own seed; members decode <= beta
//              tokens.
//   round t    each of N new members gets C tails (the last tau tokens of previous-round traces,
//              token-exact) drawn without replacement; its aggregation prompt is rendered through
//              the chat template and decoded <= beta tokens. Barrier: the round's memory is freed
//              before the next round starts (only tail tokens carry over).
//   end        answers are extracted from the last population and majority-voted (tie rule:
//              engine/rsa/vote.h); `done` carries the answer, tally, per-round tokens and timings.
// Modes: single (N=1, T=0), parallel (T=0, vote), rsa. Members start in waves when memory.request
// or the pool cannot hold the whole population at once. Seeds: member m of round t samples with
// seed + 1000003 * t + m, so the same request twice gives the same answer and token counts.
// Deadline: when deadline_ms passes, the current round is cancelled and the answer comes from the
// last complete population (`done.partial = true`); with none complete, `error deadline_exceeded`.
//
// Thread safety: scheduler thread only (constructed by Create on the submitting thread).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "engine/rsa/aggregation_prompt.h"
#include "engine/rsa/answer.h"
#include "engine/rsa/rsa_params.h"
#include "engine/rsa/tails.h"
#include "engine/sampler/rng.h"
#include "engine/scheduler/task.h"

namespace zaya {

class RsaTask final : public Task {
 public:
  // Resolves parameters, renders and tokenizes the question, checks the context and template.
  static Result<std::unique_ptr<Task>> Create(EngineCore& core, EngineRequest request,
                                              std::shared_ptr<EventSink> sink,
                                              const RsaConfig& config, uint64_t fallback_seed);

  int64_t WorstCaseSequenceTokens() const override;
  bool WantsToStart() const override;
  std::optional<std::chrono::steady_clock::time_point> Deadline() const override {
    return deadline_;
  }
  int MaxConcurrentSequences() const override { return params_.population; }
  void Start(EngineCore& core) override;
  void Pump(EngineCore& core) override;
  void OnPrefilled(EngineCore& core, Sequence& seq, std::span<const float> logits) override;
  void OnText(EngineCore& core, Sequence& seq, std::string_view text) override;
  void OnFinished(EngineCore& core, Sequence& seq) override;

  const RsaParams& params() const { return params_; }
  // Tokens of an aggregation prompt besides its tails; every prompt is exactly this plus the tails.
  int64_t aggregation_overhead_tokens() const { return aggregation_overhead_tokens_; }
  // An aggregation prompt holding `tails` (token-exact) for one member. Public for tests.
  Result<std::vector<int32_t>> BuildAggregationPrompt(EngineCore& core,
                                                      const std::vector<const Tail*>& tails) const;

 private:
  struct Member {
    std::vector<int32_t> prompt;  // round >= 1: its aggregation prompt
    std::vector<int32_t> tokens;  // generated
    std::string text;
    std::string finish;
    bool started = false;
    bool finished = false;
  };

  RsaTask(std::string id, std::string client, std::shared_ptr<EventSink> sink)
      : Task(std::move(id), std::move(client), std::move(sink)) {}

  SamplingParams MemberSampling(int member) const;
  void StartRound(EngineCore& core);
  void StartWaitingMembers(EngineCore& core);
  void EndRound(EngineCore& core);
  void Answer(EngineCore& core, bool partial);
  void Progress(EngineCore& core, const char* what);
  nlohmann::json TallyJson(const std::vector<std::optional<std::string>>& answers) const;

  RsaParams params_;
  AnswerExtractor extractor_ = *AnswerExtractor::Create("boxed");
  std::optional<AggregationTemplate> template_;
  std::string question_;
  nlohmann::json system_messages_ = nlohmann::json::array();
  bool enable_thinking_ = true;
  bool raw_prompt_ = false;  // the request sent `prompt`, not `messages`
  std::vector<int32_t> question_prompt_;
  int64_t aggregation_overhead_tokens_ = 0;
  std::optional<int> stream_member_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;

  int round_ = 0;
  std::vector<Member> members_;
  std::vector<Member> last_complete_;  // previous round's population
  int last_complete_round_ = -1;
  Sequence* parent_ = nullptr;  // round 0 prefill, alive until every member forked
  // Round 0 let go of its prefill (see StartWaitingMembers): its other members prefill the
  // question themselves.
  bool parent_released_ = false;
  std::vector<float> parent_logits_;
  std::vector<int64_t> round_tokens_;
  std::vector<double> round_ms_;
  std::chrono::steady_clock::time_point round_started_;
  Rng subset_rng_{0};
};

}  // namespace zaya
