// GenerateTask: the `generate` op. One sequence: the rendered chat (or raw prompt), streamed as
// `delta` events, ending with `done` {text, finish_reason, usage, timings}.
#pragma once

#include <string>
#include <vector>

#include "engine/scheduler/task.h"

namespace zaya {

class GenerateTask final : public Task {
 public:
  GenerateTask(std::string id, std::string client, std::shared_ptr<EventSink> sink,
               std::vector<int32_t> prompt, SamplingParams sampling)
      : Task(std::move(id), std::move(client), std::move(sink)),
        prompt_(std::move(prompt)),
        sampling_(std::move(sampling)) {}

  int64_t WorstCaseSequenceTokens() const override {
    return static_cast<int64_t>(prompt_.size()) + sampling_.max_tokens;
  }
  void Start(EngineCore& core) override;
  void OnText(EngineCore& core, Sequence& seq, std::string_view text) override;
  void OnFinished(EngineCore& core, Sequence& seq) override;

 private:
  std::vector<int32_t> prompt_;
  SamplingParams sampling_;
  double ttft_ms_ = -1;
};

}  // namespace zaya
