// Markovian RSA inside the real engine (tiny random checkpoint): token-exact tails in aggregation
// prompts, the memory bound, waves, cancellation of every member.
#include "engine/rsa/rsa_task.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>

#include "engine/scheduler/engine_core.h"
#include "tests/engine/scheduler/event_recorder.h"
#include "tests/engine/tiny_config.h"

namespace zaya {
namespace {

using Type = EngineEvent::Type;

using Recorder = testing::EventRecorder;

Config TinyConfig() {
  Config c = testing::TinyEngineConfig();
  c.rsa.population = 6;
  c.rsa.subset = 3;
  c.rsa.rounds = 2;
  c.rsa.tail = 10;
  c.rsa.budget = 24;
  c.rsa.temperature = 1.0;
  return c;
}

EngineRequest Solve(const std::string& id, uint64_t seed) {
  EngineRequest r;
  r.kind = EngineRequest::Kind::kSolve;
  r.id = id;
  r.client = "t";
  r.messages = nlohmann::json::array({{{"role", "user"}, {"content", "What is 6 times 7?"}}});
  r.solve.seed = seed;
  return r;
}

TEST(RsaTaskTest, AggregationPromptsHoldTheTailsTokenExact) {
  auto core = EngineCore::Create(TinyConfig());
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  auto task = RsaTask::Create(**core, Solve("x", 1), nullptr, TinyConfig().rsa, 1);
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  auto& rsa = static_cast<RsaTask&>(**task);
  // Three traces; their tails are the last 10 tokens, whatever text they decode to.
  std::vector<std::vector<int32_t>> traces = {
      {40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52},
      {300, 301, 302},
      {7, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209}};
  std::vector<Tail> tails;
  for (auto& t : traces) tails.push_back(TakeTail(t, 10));
  EXPECT_EQ(tails[0].tokens, std::vector<int32_t>(traces[0].end() - 10, traces[0].end()));
  EXPECT_TRUE(tails[0].truncated);
  EXPECT_FALSE(tails[1].truncated);
  std::vector<const Tail*> refs = {&tails[0], &tails[1], &tails[2]};
  auto prompt = rsa.BuildAggregationPrompt(**core, refs);
  ASSERT_TRUE(prompt.ok()) << prompt.status().ToString();
  size_t total = 0;
  for (auto& t : tails) {
    total += t.tokens.size();
    auto it = std::search(prompt->begin(), prompt->end(), t.tokens.begin(), t.tokens.end());
    EXPECT_NE(it, prompt->end()) << "tail not found verbatim";
  }
  // At most the fixed overhead (which assumes every candidate is marked truncated) plus the tails:
  // what admission planned for; exactly that when all are truncated.
  EXPECT_LE(static_cast<int64_t>(prompt->size()),
            rsa.aggregation_overhead_tokens() + static_cast<int64_t>(total));
  Tail cut = TakeTail(traces[0], 5);
  std::vector<const Tail*> all_cut = {&cut, &cut, &cut};
  auto exact = rsa.BuildAggregationPrompt(**core, all_cut);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(static_cast<int64_t>(exact->size()), rsa.aggregation_overhead_tokens() + 15);
}

// A raw-prompt solve encodes its aggregation prompt in segments around the tails, and each segment
// took the whole post-processor: with ZAYA1's [<bos>, $A, <end_of_turn>] an <end_of_turn> landed
// between the question and the first candidate. Only the first segment gets BOS now, and the
// question prompt of round 0 no suffix either.
TEST(RsaTaskTest, RawPromptsGetNoPostProcessorSuffix) {
  testing::TinyModelCopy model("rsa-eot-suffix");
  model.EditTokenizerJson(testing::AppendEndOfTurnToPostProcessor);
  Config c = TinyConfig();
  c.model.path = model.path();
  auto core = EngineCore::Create(c);
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  const int32_t bos = 2, eot = 5;
  ASSERT_EQ((*core)->tokenizer().Encode("x", Tokenizer::AddSpecial::kAll)->back(), eot);
  EngineRequest r = Solve("raw", 1);
  r.messages = nullptr;
  r.prompt = "What is 6 times 7?";
  auto task = RsaTask::Create(**core, r, nullptr, c.rsa, 1);
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  auto& rsa = static_cast<RsaTask&>(**task);
  const std::vector<std::vector<int32_t>> traces = {{40, 41, 42}, {300, 301}, {200, 201, 202}};
  std::vector<Tail> tails;
  for (const auto& t : traces) tails.push_back(TakeTail(t, 10));
  std::vector<const Tail*> refs = {&tails[0], &tails[1], &tails[2]};
  auto prompt = rsa.BuildAggregationPrompt(**core, refs);
  ASSERT_TRUE(prompt.ok()) << prompt.status().ToString();
  EXPECT_EQ(prompt->front(), bos);
  EXPECT_EQ(std::count(prompt->begin(), prompt->end(), bos), 1);
  EXPECT_EQ(std::count(prompt->begin(), prompt->end(), eot), 0);
  // Round 0's sequence is the question prompt plus the budget: BOS and the question's tokens.
  r.solve.rounds = 0;
  auto single = RsaTask::Create(**core, r, nullptr, c.rsa, 1);
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  auto question = (*core)->tokenizer().Encode(*r.prompt, Tokenizer::AddSpecial::kNone);
  EXPECT_EQ((*single)->WorstCaseSequenceTokens(),
            1 + static_cast<int64_t>(question->size()) + c.rsa.budget);
}

TEST(RsaTaskTest, PeakStateStaysWithinTheRequestsBound) {
  auto core = EngineCore::Create(TinyConfig());
  ASSERT_TRUE(core.ok());
  auto probe = RsaTask::Create(**core, Solve("probe", 3), nullptr, TinyConfig().rsa, 3);
  ASSERT_TRUE(probe.ok());
  const int64_t worst_seq = (*probe)->WorstCaseSequenceTokens();
  auto rec = std::make_shared<Recorder>();
  ASSERT_TRUE((*core)->Submit(Solve("s", 3), rec).ok());
  auto ev = rec->Wait("s");
  ASSERT_EQ(ev.back().type, Type::kDone) << ev.back().body.dump();
  EXPECT_EQ(ev.back().body["rounds_completed"].get<int>(), 3);
  auto st = (*core)->Status();
  const int64_t block_bytes = 2 * 2 * 16 * 32 * 4;
  const int64_t slot_bytes = 2 * (2 * 96 + 16) * 4;
  // N members of at most worst_seq tokens (+1 block for a copy-on-write each), the round-0 parent,
  // and the reserved state slots.
  const int64_t bound =
      (6 * ((worst_seq + 15) / 16 + 1) + (worst_seq + 15) / 16) * block_bytes + 7 * slot_bytes;
  EXPECT_LE(st["memory"]["state"]["peak_bytes"].get<int64_t>(), bound) << st.dump();
  EXPECT_EQ(st["memory"]["state"]["blocks_used"].get<int>(), 0);
}

TEST(RsaTaskTest, RunsInWavesWhenTheRequestBudgetHoldsOnlyTwoMembers) {
  Config c = TinyConfig();
  EngineRequest r = Solve("w", 4);
  r.solve.budget = 16;
  r.solve.tail = 8;
  int64_t worst_seq = 0;
  {
    auto probe_core = EngineCore::Create(c);
    ASSERT_TRUE(probe_core.ok());
    auto probe = RsaTask::Create(**probe_core, r, nullptr, c.rsa, 4);
    ASSERT_TRUE(probe.ok());
    worst_seq = (*probe)->WorstCaseSequenceTokens();
  }
  // Room for two members' worst case at a time.
  c.memory.request = static_cast<uint64_t>(2 * ((worst_seq + 15) / 16 + 1) * 8192);
  auto core = EngineCore::Create(c);
  ASSERT_TRUE(core.ok());
  auto rec = std::make_shared<Recorder>();
  ASSERT_TRUE((*core)->Submit(r, rec).ok());
  auto ev = rec->Wait("w");
  ASSERT_EQ(ev.back().type, Type::kDone) << ev.back().body.dump();
  int max_started = 0;
  for (auto& e : ev) {
    // Round 0 members share the prompt's blocks, so more of them fit; aggregation rounds are the
    // ones the budget limits to two at a time.
    if (e.type == Type::kProgress && e.body["round"].get<int>() >= 1) {
      max_started = std::max(max_started, e.body["members_started"].get<int>() -
                                              e.body["members_finished"].get<int>());
    }
  }
  EXPECT_LE(max_started, 2);  // never the whole population of 6 at once
  EXPECT_GE(max_started, 1);
}

TEST(RsaTaskTest, CancelStopsEveryMemberAndFreesTheirBlocks) {
  Config c = TinyConfig();
  c.rsa.budget = 2000;
  c.rsa.tail = 16;
  auto core = EngineCore::Create(c);
  ASSERT_TRUE(core.ok());
  auto rec = std::make_shared<Recorder>();
  EngineRequest r = Solve("c", 5);
  ASSERT_TRUE((*core)->Submit(r, rec).ok());
  (*core)->Cancel("c");
  auto ev = rec->Wait("c");
  ASSERT_EQ(ev.back().type, Type::kError);
  EXPECT_EQ(ev.back().body["code"], "cancelled");
  auto st = (*core)->Status();
  EXPECT_EQ(st["memory"]["state"]["blocks_used"].get<int>(), 0);
  EXPECT_EQ(st["running_sequences"].get<int>(), 0);
}

// Jumps the engine's clock an hour ahead when round `round` starts, so the deadline passes exactly
// then, whatever the machine's speed.
class ClockJumper : public testing::EventRecorder {
 public:
  explicit ClockJumper(int round) : round_(round) {}
  void OnEvent(const std::string& id, EngineEvent e) override {
    if (e.type == Type::kProgress && e.body.value("stage", "") == "round_started" &&
        e.body.value("round", -1) == round_) {
      offset_ = std::chrono::hours(1);
    }
    EventRecorder::OnEvent(id, std::move(e));
  }
  std::chrono::steady_clock::time_point Now() const {
    return std::chrono::steady_clock::now() + offset_.load();
  }

 private:
  int round_;
  std::atomic<std::chrono::steady_clock::duration> offset_{
      std::chrono::steady_clock::duration::zero()};
};

TEST(RsaTaskTest, DeadlineAnswersFromTheLastCompletePopulation) {
  auto core = EngineCore::Create(TinyConfig());
  ASSERT_TRUE(core.ok());
  auto jumper = std::make_shared<ClockJumper>(2);
  (*core)->SetClockForTesting([j = jumper.get()] { return j->Now(); });
  EngineRequest r = Solve("d", 6);
  r.solve.deadline_ms = 60'000;  // passes only when the clock jumps, at the start of round 2
  ASSERT_TRUE((*core)->Submit(r, jumper).ok());
  auto ev = jumper->Wait("d");
  ASSERT_EQ(ev.back().type, Type::kDone) << ev.back().body.dump();
  const auto& done = ev.back().body;
  EXPECT_TRUE(done["partial"].get<bool>());
  EXPECT_EQ(done["rounds_completed"].get<int>(), 2);  // rounds 0 and 1; round 2 was cut
  EXPECT_EQ(done["candidates"].size(), 6u);
  EXPECT_EQ((*core)->Status()["memory"]["state"]["blocks_used"].get<int>(), 0);
}

// Round 0 holds the question's prefill while its first member forks (its own blocks for the budget
// + 2). With memory.request at exactly the largest sequence's worst case that never fits, and the
// solve, admitted, waited for ever; with one sequence slot too. It now lets the prefill go and runs
// its members one at a time, each prefilling the question, and answers as it does with room.
TEST(RsaTaskTest, ASolveAtTheMemoryEdgeRunsMemberByMember) {
  Config c = TinyConfig();
  EngineRequest r = Solve("edge", 3);
  r.solve.rounds = 0;  // parallel sampling: the largest sequence is the question plus the budget
  r.solve.budget = 24;
  int64_t worst_seq = 0;
  nlohmann::json with_room;
  {
    auto core = EngineCore::Create(c);
    ASSERT_TRUE(core.ok());
    auto probe = RsaTask::Create(**core, r, nullptr, c.rsa, 4);
    ASSERT_TRUE(probe.ok());
    worst_seq = (*probe)->WorstCaseSequenceTokens();
    auto rec = std::make_shared<Recorder>();
    ASSERT_TRUE((*core)->Submit(r, rec).ok());
    auto ev = rec->Wait("edge", 30);
    ASSERT_EQ(ev.back().type, Type::kDone) << ev.back().body.dump();
    with_room = ev.back().body["candidates"];
  }
  const int64_t largest = (worst_seq + 15) / 16 + 1;
  // The prefill (question) beside a fork (budget + 2 blocks) is more than the largest sequence.
  const int64_t q = worst_seq - 24;
  ASSERT_GT((q + 15) / 16 + 1 + (24 + 15) / 16 + 2, largest) << "the edge this test is about";
  c.memory.request = static_cast<uint64_t>(largest * 8192);
  {
    auto core = EngineCore::Create(c);
    ASSERT_TRUE(core.ok());
    auto rec = std::make_shared<Recorder>();
    ASSERT_TRUE((*core)->Submit(r, rec).ok());
    auto ev = rec->Wait("edge", 30);
    ASSERT_EQ(ev.back().type, Type::kDone) << ev.back().body.dump();
    EXPECT_EQ(ev.back().body["candidates"], with_room);
    // Six waves, each started from Pump. The idle scheduler used to sleep its full second before
    // each (5.0 s here); a wave of this tiny model takes milliseconds (tens in a release build,
    // well under a second under ASan on a loaded machine).
    EXPECT_LT(ev.back().body["timings"]["total_ms"].get<double>(), 3000.0)
        << ev.back().body["timings"].dump();
  }
  Config one = TinyConfig();
  one.scheduler.max_running_sequences = 1;
  auto core = EngineCore::Create(one);
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  auto rec = std::make_shared<Recorder>();
  ASSERT_TRUE((*core)->Submit(r, rec).ok());
  auto ev = rec->Wait("edge", 30);
  ASSERT_EQ(ev.back().type, Type::kDone) << ev.back().body.dump();
  EXPECT_EQ(ev.back().body["candidates"], with_room);
}

// Two solves in round 0, each holding its question's prefill while it forks members: with two
// sequence slots both prefills took them and neither could fork, so both waited for ever. Two
// identical greedy generates ahead of them hold both slots and end in the same step, so that both
// solves start in one scheduler pass. A round-0 task that cannot fork while nothing else runs lets
// go of its prefill and prefills the question per member; both finish with the answers they give
// alone.
TEST(RsaTaskTest, TwoSolvesInRoundZeroDoNotWaitForEachOther) {
  Config c = TinyConfig();
  c.scheduler.max_running_sequences = 2;
  auto solve = [](const std::string& id, uint64_t seed) {
    EngineRequest r = Solve(id, seed);
    r.solve.rounds = 0;
    r.solve.population = 2;
    r.solve.budget = 12;
    return r;
  };
  auto hold = [](const std::string& id) {
    EngineRequest g;
    g.kind = EngineRequest::Kind::kGenerate;
    g.id = id;
    g.client = "t";
    g.prompt = "hello world";
    g.sampling.max_tokens = 48;
    g.sampling.temperature = 0;  // the two decode the same tokens and end in the same step
    return g;
  };
  nlohmann::json alone_a, alone_b;  // each member's answer and text
  {
    auto core = EngineCore::Create(c);
    ASSERT_TRUE(core.ok());
    auto rec = std::make_shared<Recorder>();
    ASSERT_TRUE((*core)->Submit(solve("a", 11), rec).ok());
    auto a = rec->Wait("a", 30);
    ASSERT_EQ(a.back().type, Type::kDone) << a.back().body.dump();
    alone_a = a.back().body["candidates"];
    ASSERT_TRUE((*core)->Submit(solve("b", 12), rec).ok());
    auto b = rec->Wait("b", 30);
    ASSERT_EQ(b.back().type, Type::kDone) << b.back().body.dump();
    alone_b = b.back().body["candidates"];
  }
  auto core = EngineCore::Create(c);
  ASSERT_TRUE(core.ok());
  auto rec = std::make_shared<Recorder>();
  ASSERT_TRUE((*core)->Submit(hold("g1"), rec).ok());
  ASSERT_TRUE((*core)->Submit(hold("g2"), rec).ok());
  ASSERT_TRUE((*core)->Submit(solve("a", 11), rec).ok());
  ASSERT_TRUE((*core)->Submit(solve("b", 12), rec).ok());
  auto a = rec->Wait("a", 30);
  auto b = rec->Wait("b", 30);
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  ASSERT_EQ(a.back().type, Type::kDone) << a.back().body.dump();
  ASSERT_EQ(b.back().type, Type::kDone) << b.back().body.dump();
  EXPECT_EQ(a.back().body["candidates"], alone_a);
  EXPECT_EQ(b.back().body["candidates"], alone_b);
  EXPECT_EQ((*core)->Status()["memory"]["state"]["blocks_used"].get<int>(), 0);
}

// A solve's deadline_ms was checked only once it ran (Pump): queued behind work holding the
// memory it needs, it heard nothing until that work ended. It is answered from the queue now.
TEST(RsaTaskTest, DeadlinePassingInTheQueueIsAnswered) {
  Config c = TinyConfig();
  c.memory.state = 2ull << 20;  // ~247 KV blocks of 16 tokens
  c.memory.request = c.memory.state;
  auto core = EngineCore::Create(c);
  ASSERT_TRUE(core.ok()) << core.status().ToString();
  auto rec = std::make_shared<Recorder>();
  EngineRequest blocker;
  blocker.kind = EngineRequest::Kind::kGenerate;
  blocker.id = "blocker";
  blocker.client = "t";
  blocker.prompt = "hello world";
  blocker.sampling.max_tokens = 3000;  // reserves ~190 blocks until it ends
  blocker.sampling.seed = 5;
  ASSERT_TRUE((*core)->Submit(blocker, rec).ok());
  EngineRequest r = Solve("late", 6);
  r.solve.rounds = 0;
  r.solve.budget = 1500;  // needs ~97 blocks: waits behind the blocker
  r.solve.deadline_ms = 1;
  ASSERT_TRUE((*core)->Submit(r, rec).ok());
  auto ev = rec->Wait("late", 30);
  ASSERT_FALSE(ev.empty());
  ASSERT_EQ(ev.back().type, Type::kError) << ev.back().body.dump();
  EXPECT_EQ(ev.back().body["code"], "deadline_exceeded") << ev.back().body.dump();
  EXPECT_NE(ev.back().body["message"].get<std::string>().find("queue"), std::string::npos)
      << ev.back().body.dump();
  (*core)->Cancel("blocker");
  rec->Wait("blocker", 30);
}

TEST(RsaTaskTest, ParametersOutsideTheLimitsAreRefusedAtSubmit) {
  auto core = EngineCore::Create(TinyConfig());
  ASSERT_TRUE(core.ok());
  auto rec = std::make_shared<Recorder>();
  EngineRequest r = Solve("bad", 1);
  r.solve.population = 1000;
  Status s = (*core)->Submit(r, rec);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EngineRequest big = Solve("big", 1);
  big.solve.budget = 30000;  // beyond the tiny model's 4096-token context
  Status s2 = (*core)->Submit(big, rec);
  EXPECT_FALSE(s2.ok());
}

}  // namespace
}  // namespace zaya
