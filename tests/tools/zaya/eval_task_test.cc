#include "tools/zaya/eval_task.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>

namespace zaya::eval {
namespace {

// Parses the question back into its numbers, so the tests check the text, not only the fields.
struct Parsed {
  int x0 = -1, n = -1, a = -1, b = -1;
};
Parsed ParseQuestion(const std::string& q) {
  Parsed p;
  char tail[128] = {};
  const int got = std::sscanf(q.c_str(), "Let x = %d. Repeat %d times: x = x*%d+%d, %127[^\n]",
                              &p.x0, &p.n, &p.a, &p.b, tail);
  EXPECT_EQ(got, 5) << q;
  EXPECT_STREQ(tail, "keeping only the last two digits of x. What is x at the end?") << q;
  return p;
}

// The task's answer computed differently from IterateAnswer: full integers, digits dropped by
// string slicing, as a person would "keep only the last two digits".
std::string SlowAnswer(int x0, int a, int b, int n) {
  long long x = x0;
  for (int i = 0; i < n; ++i) {
    std::string digits = std::to_string(x * a + b);
    if (digits.size() > 2) digits = digits.substr(digits.size() - 2);
    x = std::stoll(digits);
  }
  return std::to_string(x);
}

// Questions and answers from tools/train/ztask.py's Problem(x0, a, b, n) for these numbers.
const char* const kPinnedSeed0Problem0 =
    "Let x = 96. Repeat 3 times: x = x*5+9, keeping only the last two digits of x. What is x at "
    "the end?";
const char* const kPinnedSeed12345Problem7 =
    "Let x = 15. Repeat 7 times: x = x*8+3, keeping only the last two digits of x. What is x at "
    "the end?";

TEST(IterateTaskTest, QuestionIsTheTrainingTaskText) {
  // models/zaya-tiny-reasoner/demo.json, produced by tools/train/ztask.py.
  EXPECT_EQ(IterateQuestion(23, 5, 5, 3),
            "Let x = 23. Repeat 3 times: x = x*5+5, keeping only the last two digits of x. What "
            "is x at the end?");
  EXPECT_EQ(IterateAnswer(23, 5, 5, 3), 30);  // 120 -> 20, 105 -> 5, 30
  EXPECT_EQ(IterateAnswer(99, 9, 9, 1), 0);   // 900 -> 00
  EXPECT_EQ(IterateAnswer(41, 2, 7, 0), 41);
}

TEST(IterateTaskTest, ProblemsAreInRangeAndAnsweredCorrectly) {
  std::set<int> x0s, as, bs, ns;
  for (const IterateProblem& p : MakeIterateProblems(7, 2000, 2, 6)) {
    EXPECT_GE(p.x0, 10);
    EXPECT_LE(p.x0, 99);
    EXPECT_GE(p.a, 2);
    EXPECT_LE(p.a, 9);
    EXPECT_GE(p.b, 1);
    EXPECT_LE(p.b, 9);
    EXPECT_GE(p.n, 2);
    EXPECT_LE(p.n, 6);
    const Parsed q = ParseQuestion(p.question);
    EXPECT_EQ(q.x0, p.x0);
    EXPECT_EQ(q.a, p.a);
    EXPECT_EQ(q.b, p.b);
    EXPECT_EQ(q.n, p.n);
    EXPECT_EQ(p.answer, SlowAnswer(q.x0, q.a, q.b, q.n)) << p.question;
    x0s.insert(p.x0);
    as.insert(p.a);
    bs.insert(p.b);
    ns.insert(p.n);
  }
  // Every value of every range is reached (2000 draws; missing one has probability < 1e-9).
  EXPECT_EQ(x0s.size(), 90u);
  EXPECT_EQ(as.size(), 8u);
  EXPECT_EQ(bs.size(), 9u);
  EXPECT_EQ(ns.size(), 5u);
}

TEST(IterateTaskTest, ProblemIOfSeedSIsFixed) {
  const auto first = MakeIterateProblems(42, 50, 2, 3);
  const auto again = MakeIterateProblems(42, 50, 2, 3);
  const auto longer = MakeIterateProblems(42, 80, 2, 3);
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].question, again[i].question);
    EXPECT_EQ(first[i].question, longer[i].question) << "problem " << i << " depends on --problems";
    EXPECT_EQ(first[i].index, static_cast<int>(i));
  }
  // Pinned values: a change of the generator changes every published eval, so it must be
  // deliberate (update docs/eval.md's numbers with it).
  EXPECT_EQ(MakeIterateProblem(0, 0, 2, 3).question, MakeIterateProblems(0, 1, 2, 3)[0].question);
  const IterateProblem p = MakeIterateProblem(0, 0, 2, 3);
  EXPECT_EQ(p.question, IterateQuestion(p.x0, p.a, p.b, p.n));
  EXPECT_EQ(p.question, kPinnedSeed0Problem0);
  EXPECT_EQ(p.answer, "79");
  EXPECT_EQ(MakeIterateProblem(12345, 7, 2, 10).question, kPinnedSeed12345Problem7);
  EXPECT_EQ(MakeIterateProblem(12345, 7, 2, 10).answer, "59");
}

TEST(IterateTaskTest, SplitMixMatchesTheReferenceVectors) {
  // Vigna's splitmix64.c seeded with 1234567.
  uint64_t state = 1234567;
  EXPECT_EQ(SplitMix64(&state), 6457827717110365317ull);
  EXPECT_EQ(SplitMix64(&state), 3203168211198807973ull);
  EXPECT_EQ(SplitMix64(&state), 9817491932198370423ull);
}

TEST(IterateTaskTest, SeedsGiveDifferentProblemSets) {
  const auto a = MakeIterateProblems(1, 100, 2, 3);
  const auto b = MakeIterateProblems(2, 100, 2, 3);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i].question == b[i].question;
  EXPECT_LT(same, 5);  // two seeds share a question by chance ~1 in 13000
}

TEST(IterateTaskTest, RequestSeedsDependOnSampleSeedAndIndex) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 100; ++i) seen.insert(RequestSeed(0, i));
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(RequestSeed(5, 3), RequestSeed(5, 3));
  EXPECT_NE(RequestSeed(5, 3), RequestSeed(6, 3));
}

TEST(IterateTaskTest, FixedRangeGivesFixedSteps) {
  for (const IterateProblem& p : MakeIterateProblems(3, 20, 40, 40)) EXPECT_EQ(p.n, 40);
}

TEST(EvalAnswerTest, ExtractsTheLastCompleteBoxedAnswer) {
  EXPECT_EQ(ExtractFinalAnswer("1: 23*5+5=120 x=20\n</think>\nThe answer is \\boxed{30}."), "30");
  EXPECT_EQ(ExtractFinalAnswer("\\boxed{12} then \\boxed{ 7 }"), "7");
  // A trace cut off inside its last \boxed{ keeps the previous complete one.
  EXPECT_EQ(ExtractFinalAnswer("\\boxed{12} and \\boxed{3"), "12");
  EXPECT_EQ(ExtractFinalAnswer("no box here, x=30"), std::nullopt);
  EXPECT_EQ(ExtractFinalAnswer("\\boxed{}"), std::nullopt);
  EXPECT_EQ(ExtractFinalAnswer("\\boxed{$30$.}"), "30");
}

TEST(EvalAnswerTest, MatchesAfterNormalisation) {
  EXPECT_TRUE(AnswerMatches(std::string("30"), "30"));
  EXPECT_TRUE(AnswerMatches(std::string(" 30 "), "30"));
  EXPECT_FALSE(AnswerMatches(std::string("3"), "30"));
  EXPECT_FALSE(AnswerMatches(std::string("030"), "30"));
  EXPECT_FALSE(AnswerMatches(std::nullopt, "30"));
  EXPECT_FALSE(AnswerMatches(std::string(""), ""));
}

TEST(EvalWilsonTest, KnownValues) {
  // Reference values: Wilson (1927) score interval, z = 1.96 (tools/train/eval.py's wilson()).
  Interval i = Wilson(0, 10);
  EXPECT_DOUBLE_EQ(i.estimate, 0.0);
  EXPECT_DOUBLE_EQ(i.lo, 0.0);
  EXPECT_NEAR(i.hi, 0.2775401687666166, 1e-12);
  i = Wilson(5, 10);
  EXPECT_NEAR(i.lo, 0.23658959361548731, 1e-12);
  EXPECT_NEAR(i.hi, 0.7634104063845126, 1e-12);
  i = Wilson(19, 300);
  EXPECT_NEAR(i.estimate, 0.06333333333333334, 1e-12);
  EXPECT_NEAR(i.lo, 0.04091655604878176, 1e-12);
  EXPECT_NEAR(i.hi, 0.09679203948257407, 1e-12);
  i = Wilson(10, 10);
  EXPECT_NEAR(i.lo, 0.7224598312333834, 1e-12);
  EXPECT_DOUBLE_EQ(i.hi, 1.0);
  i = Wilson(0, 0);
  EXPECT_DOUBLE_EQ(i.lo, 0.0);
  EXPECT_DOUBLE_EQ(i.hi, 1.0);
}

TEST(EvalParseTest, CommaLists) {
  EXPECT_EQ(SplitCommas("single,rsa"), (std::vector<std::string>{"single", "rsa"}));
  EXPECT_EQ(SplitCommas("rsa"), (std::vector<std::string>{"rsa"}));
  EXPECT_EQ(SplitCommas("a,,b,"), (std::vector<std::string>{"a", "", "b", ""}));
}

}  // namespace
}  // namespace zaya::eval
