#include "engine/rsa/rsa_task.h"

#include <algorithm>

#include "engine/rsa/subsets.h"
#include "engine/rsa/vote.h"
#include "engine/scheduler/engine_core.h"

namespace zaya {
namespace {

constexpr uint64_t kRoundSeedStride = 1000003;

// The question is the last user message; earlier system messages are kept around aggregation
// prompts so the model sees the same instructions in every round.
Status SplitMessages(const nlohmann::json& messages, std::string* question,
                     nlohmann::json* system) {
  if (!messages.is_array() || messages.empty())
    return InvalidArgument("messages must be a non-empty array");
  for (const auto& m : messages) {
    if (m.value("role", "") == "system") system->push_back(m);
  }
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (it->value("role", "") == "user" && (*it)["content"].is_string()) {
      *question = (*it)["content"].get<std::string>();
      return Status::Ok();
    }
  }
  return InvalidArgument("solve needs a user message holding the question");
}

}  // namespace

Result<std::unique_ptr<Task>> RsaTask::Create(EngineCore& core, EngineRequest request,
                                              std::shared_ptr<EventSink> sink,
                                              const RsaConfig& config, uint64_t fallback_seed) {
  auto task = std::unique_ptr<RsaTask>(new RsaTask(request.id, request.client, std::move(sink)));
  ZAYA_ASSIGN_OR_RETURN(task->params_, ResolveRsaParams(request.solve, config, fallback_seed));
  ZAYA_ASSIGN_OR_RETURN(task->extractor_,
                        AnswerExtractor::Create(config.answer_extractor, config.answer_regex));
  ZAYA_ASSIGN_OR_RETURN(AggregationTemplate tmpl,
                        AggregationTemplate::Parse(config.aggregation_template));
  task->template_.emplace(std::move(tmpl));
  task->enable_thinking_ = request.enable_thinking;
  task->stream_member_ = request.solve.stream_member;
  if (task->stream_member_ &&
      (*task->stream_member_ < 0 || *task->stream_member_ >= task->params_.population)) {
    return InvalidArgument("stream_member must be in [0, population)");
  }
  if (request.solve.deadline_ms) {
    task->deadline_ = task->accepted_at() + std::chrono::milliseconds(*request.solve.deadline_ms);
  }
  task->raw_prompt_ = request.prompt.has_value();
  if (request.prompt) {
    task->question_ = *request.prompt;
    ZAYA_ASSIGN_OR_RETURN(task->question_prompt_,
                          core.Encode(task->question_, Tokenizer::AddSpecial::kPrefix));
  } else {
    if (core.chat_template() == nullptr) {
      return FailedPrecondition(
          "this model has no chat template; send `prompt` instead of `messages`");
    }
    ZAYA_RETURN_IF_ERROR(
        SplitMessages(request.messages, &task->question_, &task->system_messages_));
    auto text = core.chat_template()->Render(request.messages, true,
                                             {{"enable_thinking", task->enable_thinking_}});
    if (!text.ok()) return text.status().WithContext("rendering the chat template");
    ZAYA_ASSIGN_OR_RETURN(task->question_prompt_, core.Encode(*text, Tokenizer::AddSpecial::kNone));
  }
  if (task->question_prompt_.empty()) return InvalidArgument("the question is empty");
  // Fixed tokens of an aggregation prompt besides the tails: build one with C empty tails.
  if (task->params_.rounds > 0) {
    // Truncated: the "[...truncated...]" marker is the longest a candidate's frame can be.
    std::vector<Tail> empty(static_cast<size_t>(task->params_.subset), Tail{{}, true});
    std::vector<const Tail*> refs;
    for (const Tail& t : empty) refs.push_back(&t);
    ZAYA_ASSIGN_OR_RETURN(std::vector<int32_t> ids, task->BuildAggregationPrompt(core, refs));
    task->aggregation_overhead_tokens_ = static_cast<int64_t>(ids.size());
  }
  const int64_t worst = task->WorstCaseSequenceTokens();
  if (worst > core.max_context()) {
    return OutOfRange("a member of this request may need " + std::to_string(worst) +
                      " tokens of context (|q| + C*tau + beta), more than the model's " +
                      std::to_string(core.max_context()) + "; lower budget, tail or subset");
  }
  task->subset_rng_ = Rng(DeriveSeed(task->params_.seed, 0x5u));
  return std::unique_ptr<Task>(std::move(task));
}

int64_t RsaTask::WorstCaseSequenceTokens() const {
  const int64_t q = static_cast<int64_t>(question_prompt_.size());
  int64_t worst = q + params_.budget;
  if (params_.rounds > 0) {
    worst =
        std::max(worst, aggregation_overhead_tokens_ +
                            static_cast<int64_t>(params_.subset) * params_.tail + params_.budget);
  }
  return worst;
}

SamplingParams RsaTask::MemberSampling(int member) const {
  SamplingParams sp;
  sp.max_tokens = params_.budget;
  sp.temperature = params_.temperature;
  sp.top_p = params_.top_p;
  sp.seed = params_.seed + kRoundSeedStride * static_cast<uint64_t>(round_) +
            static_cast<uint64_t>(member);
  return sp;
}

void RsaTask::Start(EngineCore& core) {
  round_started_ = std::chrono::steady_clock::now();
  members_.assign(static_cast<size_t>(params_.population), Member{});
  round_tokens_.push_back(0);
  // Round 0: one prefill of the question, then forks.
  SequenceSpec spec;
  spec.prompt = question_prompt_;
  spec.prefill_only = true;
  auto parent = core.StartSequence(*this, -1, std::move(spec));
  if (!parent.ok()) {
    Fail(core, parent.status().WithContext("starting round 0"));
    return;
  }
  parent_ = *parent;
  Progress(core, "round_started");
}

void RsaTask::OnPrefilled(EngineCore& core, Sequence& seq, std::span<const float> logits) {
  if (&seq != parent_) return;
  parent_logits_.assign(logits.begin(), logits.end());
  StartWaitingMembers(core);
}

void RsaTask::StartWaitingMembers(EngineCore& core) {
  for (size_t m = 0; m < members_.size(); ++m) {
    Member& mem = members_[m];
    if (mem.started) continue;
    SequenceSpec spec;
    spec.sampling = MemberSampling(static_cast<int>(m));
    spec.stream = stream_member_ && *stream_member_ == static_cast<int>(m);
    if (round_ == 0 && !parent_released_) {
      if (parent_ == nullptr || parent_logits_.empty()) return;  // prefill not done yet
      auto seq = core.ForkSequence(*parent_, static_cast<int>(m), std::move(spec));
      if (!seq.ok()) {
        // No room to fork. While a sequence runs (a member of ours or another request's), its
        // end makes room: wait (a wave). With none running, room never comes: another task's
        // prefill can hold it while that task waits for what ours holds (two solves in round 0
        // with two sequence slots did), or memory.request holds the largest sequence but not the
        // prefill beside a member. So let go of the prefill; the rest of round 0 prefills the
        // question member by member, like any sequence.
        const bool running = std::any_of(members_.begin(), members_.end(),
                                         [](const Member& x) { return x.started && !x.finished; });
        if (!running && !core.SequencesRunningBesides(*this)) {
          core.FreeSequence(*parent_);
          parent_ = nullptr;
          parent_released_ = true;
        }
        return;
      }
      mem.started = true;
      core.AcceptLogits(**seq, parent_logits_);
    } else {
      spec.prompt = round_ == 0 ? question_prompt_ : mem.prompt;
      if (!core.CanStart(*this, static_cast<int64_t>(spec.prompt.size()) + params_.budget)) return;
      auto seq = core.StartSequence(*this, static_cast<int>(m), std::move(spec));
      if (!seq.ok()) return;
      mem.started = true;
    }
  }
  // Every member of round 0 holds its own reference to the prompt's blocks now.
  if (round_ == 0 && parent_ != nullptr) {
    core.FreeSequence(*parent_);
    parent_ = nullptr;
  }
}

bool RsaTask::WantsToStart() const {
  return !done() &&
         std::any_of(members_.begin(), members_.end(), [](const Member& m) { return !m.started; });
}

void RsaTask::Pump(EngineCore& core) {
  if (deadline_ && core.Now() >= *deadline_) {
    if (last_complete_round_ >= 0) {
      Answer(core, /*partial=*/true);
    } else {
      Fail(core, {StatusCode::kDeadlineExceeded,
                  "deadline_ms passed before the first round completed; no answer"});
    }
    return;
  }
  StartWaitingMembers(core);
}

void RsaTask::OnText(EngineCore& core, Sequence& seq, std::string_view text) {
  if (text.empty()) return;
  core.Emit(*this, {EngineEvent::Type::kDelta,
                    {{"text", std::string(text)}, {"member", seq.member}, {"round", round_}}});
}

void RsaTask::OnFinished(EngineCore& core, Sequence& seq) {
  if (seq.member < 0 || seq.member >= static_cast<int>(members_.size())) return;
  Member& mem = members_[static_cast<size_t>(seq.member)];
  mem.tokens = seq.generated;
  mem.text = seq.text;
  mem.finish = std::string(FinishReasonName(seq.finish));
  mem.finished = true;
  round_tokens_.back() += static_cast<int64_t>(seq.generated.size());
  Progress(core, "member_finished");
  const bool all =
      std::all_of(members_.begin(), members_.end(), [](const Member& m) { return m.finished; });
  if (all) EndRound(core);
}

void RsaTask::EndRound(EngineCore& core) {
  round_ms_.push_back(MsSince(round_started_));
  last_complete_ = members_;
  last_complete_round_ = round_;
  if (round_ >= params_.rounds) {
    Answer(core, /*partial=*/false);
    return;
  }
  // Build round t+1 from the tails of this population.
  std::vector<Tail> tails;
  for (const Member& m : last_complete_) tails.push_back(TakeTail(m.tokens, params_.tail));
  auto subsets = DrawSubsets(params_.population, params_.subset, params_.population, subset_rng_);
  if (!subsets.ok()) {
    Fail(core, subsets.status());
    return;
  }
  ++round_;
  members_.assign(static_cast<size_t>(params_.population), Member{});
  for (int m = 0; m < params_.population; ++m) {
    std::vector<const Tail*> chosen;
    for (int idx : (*subsets)[static_cast<size_t>(m)])
      chosen.push_back(&tails[static_cast<size_t>(idx)]);
    auto ids = BuildAggregationPrompt(core, chosen);
    if (!ids.ok()) {
      Fail(core, ids.status().WithContext("building an aggregation prompt"));
      return;
    }
    members_[static_cast<size_t>(m)].prompt = std::move(*ids);
  }
  round_tokens_.push_back(0);
  round_started_ = std::chrono::steady_clock::now();
  Progress(core, "round_started");
  StartWaitingMembers(core);
}

Result<std::vector<int32_t>> RsaTask::BuildAggregationPrompt(
    EngineCore& core, const std::vector<const Tail*>& tails) const {
  // The tails go in as TOKENS (token-exact Markovian state): the template and chat template are
  // rendered with a sentinel where each tail goes, the text around the sentinels is tokenized, and
  // the tails' own tokens are spliced in. The prompt's length is then exactly the fixed overhead
  // plus the tails, which is what admission planned for.
  static constexpr char kSentinel = '\x1f';
  std::vector<std::string> marks;
  std::vector<AggregationCandidate> cands;
  for (size_t i = 0; i < tails.size(); ++i)
    marks.push_back(std::string(1, kSentinel) + std::to_string(i) + kSentinel);
  for (size_t i = 0; i < tails.size(); ++i) cands.push_back({marks[i], tails[i]->truncated});
  const std::string body = template_->Render(question_, cands);
  std::string text = body;
  const bool chat = core.chat_template() != nullptr && !raw_prompt_;
  if (chat) {
    nlohmann::json msgs = system_messages_;
    msgs.push_back({{"role", "user"}, {"content", body}});
    ZAYA_ASSIGN_OR_RETURN(
        text, core.chat_template()->Render(msgs, true, {{"enable_thinking", enable_thinking_}}));
  }
  std::vector<int32_t> out;
  size_t pos = 0;
  for (size_t i = 0; i <= tails.size(); ++i) {
    const size_t at = i < tails.size() ? text.find(marks[i], pos) : text.size();
    if (at == std::string::npos) {
      return InvalidArgument(
          "the chat template dropped or reordered the candidates of an "
          "aggregation prompt; check [rsa] aggregation_template");
    }
    const std::string segment = text.substr(pos, at - pos);
    if (segment.find(kSentinel) != std::string::npos) {
      return InvalidArgument("the question may not contain the control character U+001F");
    }
    if (!segment.empty()) {
      // One prompt cut into segments around the tails: BOS before the first of a raw one, and
      // nothing after any (a suffix such as ZAYA1's <end_of_turn> would land between segments).
      const auto add =
          !chat && i == 0 ? Tokenizer::AddSpecial::kPrefix : Tokenizer::AddSpecial::kNone;
      ZAYA_ASSIGN_OR_RETURN(std::vector<int32_t> ids, core.Encode(segment, add));
      out.insert(out.end(), ids.begin(), ids.end());
    }
    if (i < tails.size()) {
      out.insert(out.end(), tails[i]->tokens.begin(), tails[i]->tokens.end());
      pos = at + marks[i].size();
    }
  }
  return out;
}

nlohmann::json RsaTask::TallyJson(const std::vector<std::optional<std::string>>& answers) const {
  VoteResult vote = MajorityVote(answers);
  nlohmann::json tally = nlohmann::json::array();
  for (const auto& e : vote.tally) tally.push_back({{"answer", e.answer}, {"votes", e.votes}});
  return tally;
}

void RsaTask::Answer(EngineCore& core, bool partial) {
  std::vector<std::optional<std::string>> answers;
  nlohmann::json candidates = nlohmann::json::array();
  for (const Member& m : last_complete_) {
    answers.push_back(extractor_.ExtractNormalized(m.text));
    candidates.push_back(
        {{"answer", answers.back() ? nlohmann::json(*answers.back()) : nlohmann::json()},
         {"tokens", m.tokens.size()},
         {"finish_reason", m.finish}});
  }
  VoteResult vote = MajorityVote(answers);
  int64_t total = 0;
  for (int64_t t : round_tokens_) total += t;
  nlohmann::json body = {
      {"answer", vote.winner ? nlohmann::json(*vote.winner) : nlohmann::json()},
      {"votes", vote.winner_votes},
      {"voters", vote.voters},
      {"tally", TallyJson(answers)},
      {"mode", std::string(RsaModeName(params_.mode))},
      {"params",
       {{"population", params_.population},
        {"subset", params_.subset},
        {"rounds", params_.rounds},
        {"tail", params_.tail},
        {"budget", params_.budget},
        {"temperature", params_.temperature},
        {"top_p", params_.top_p},
        {"seed", params_.seed}}},
      {"rounds_completed", last_complete_round_ + 1},
      {"partial", partial},
      {"candidates", candidates},
      {"usage",
       {{"prompt_tokens", question_prompt_.size()},
        {"completion_tokens", total},
        {"round_tokens", round_tokens_}}},
      {"timings",
       {{"queue_ms",
         std::chrono::duration<double, std::milli>(started_at() - accepted_at()).count()},
        {"round_ms", round_ms_},
        {"total_ms", MsSince(accepted_at())}}}};
  if (!last_complete_.empty() && vote.winner) {
    // The text of the first member that gave the winning answer, for clients that show a solution.
    for (size_t i = 0; i < last_complete_.size(); ++i) {
      if (answers[i] && *answers[i] == *vote.winner) {
        body["text"] = last_complete_[i].text;
        break;
      }
    }
  }
  Finish(core, std::move(body));
}

void RsaTask::Progress(EngineCore& core, const char* what) {
  int finished = 0, started = 0;
  int64_t tokens = 0;
  for (const Member& m : members_) {
    finished += m.finished ? 1 : 0;
    started += m.started ? 1 : 0;
    tokens += static_cast<int64_t>(m.tokens.size());
  }
  nlohmann::json body = {{"stage", what},
                         {"round", round_},
                         {"rounds", params_.rounds},
                         {"population", params_.population},
                         {"members_started", started},
                         {"members_finished", finished},
                         {"round_tokens", tokens}};
  if (round_ == params_.rounds && finished > 0) {
    std::vector<std::optional<std::string>> answers;
    for (const Member& m : members_) {
      if (m.finished) answers.push_back(extractor_.ExtractNormalized(m.text));
    }
    body["tally"] = TallyJson(answers);
  }
  core.Emit(*this, {EngineEvent::Type::kProgress, std::move(body)});
}

}  // namespace zaya
