#include "engine/scheduler/generate_task.h"

#include "engine/scheduler/engine_core.h"

namespace zaya {

void GenerateTask::Start(EngineCore& core) {
  SequenceSpec spec;
  spec.prompt = prompt_;
  spec.sampling = sampling_;
  spec.stream = true;
  auto seq = core.StartSequence(*this, 0, std::move(spec));
  if (!seq.ok()) Fail(core, seq.status());
}

void GenerateTask::OnText(EngineCore& core, Sequence& /*seq*/, std::string_view text) {
  if (ttft_ms_ < 0) ttft_ms_ = MsSince(accepted_at());
  if (!text.empty()) core.Emit(*this, {EngineEvent::Type::kDelta, {{"text", std::string(text)}}});
}

void GenerateTask::OnFinished(EngineCore& core, Sequence& seq) {
  if (ttft_ms_ < 0) ttft_ms_ = MsSince(accepted_at());
  nlohmann::json body = {
      {"text", seq.text},
      {"finish_reason", std::string(FinishReasonName(seq.finish))},
      {"usage", {{"prompt_tokens", prompt_.size()}, {"completion_tokens", seq.generated.size()}}},
      {"timings",
       {{"queue_ms",
         std::chrono::duration<double, std::milli>(started_at() - accepted_at()).count()},
        {"ttft_ms", ttft_ms_},
        {"total_ms", MsSince(accepted_at())}}}};
  Finish(core, std::move(body));
}

}  // namespace zaya
