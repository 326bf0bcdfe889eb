#include "engine/rsa/rsa_params.h"

#include <gtest/gtest.h>

#include <string>

namespace zaya {
namespace {

void ExpectError(const SolveParams& req, const std::string& needle, const RsaConfig& cfg = {}) {
  auto r = ResolveRsaParams(req, cfg, 0);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(RsaParamsTest, DefaultsComeFromTheConfig) {
  RsaConfig cfg;
  auto r = ResolveRsaParams({}, cfg, 99);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mode, RsaMode::kRsa);
  EXPECT_EQ(r->population, 16);
  EXPECT_EQ(r->subset, 4);
  EXPECT_EQ(r->rounds, 2);
  EXPECT_EQ(r->tail, 4096);
  EXPECT_EQ(r->budget, 16384);
  EXPECT_DOUBLE_EQ(r->temperature, 0.8);
  EXPECT_DOUBLE_EQ(r->top_p, 1.0);
  EXPECT_EQ(r->seed, 99u);
}

TEST(RsaParamsTest, OverridesApply) {
  SolveParams req;
  req.population = 8;
  req.subset = 2;
  req.rounds = 3;
  req.tail = 100;
  req.budget = 500;
  req.temperature = 0.0;
  req.top_p = 0.9;
  req.seed = 5;
  auto r = ResolveRsaParams(req, RsaConfig{}, 99);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->population, 8);
  EXPECT_EQ(r->subset, 2);
  EXPECT_EQ(r->rounds, 3);
  EXPECT_EQ(r->tail, 100);
  EXPECT_EQ(r->budget, 500);
  EXPECT_EQ(r->temperature, 0.0);
  EXPECT_EQ(r->seed, 5u);
}

TEST(RsaParamsTest, ModesFixNAndT) {
  SolveParams single;
  single.mode = "single";
  auto r = ResolveRsaParams(single, RsaConfig{}, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mode, RsaMode::kSingle);
  EXPECT_EQ(r->population, 1);
  EXPECT_EQ(r->rounds, 0);
  EXPECT_EQ(r->subset, 0);
  EXPECT_EQ(RsaModeName(r->mode), "single");

  SolveParams parallel;
  parallel.mode = "parallel";
  parallel.population = 8;
  r = ResolveRsaParams(parallel, RsaConfig{}, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->population, 8);
  EXPECT_EQ(r->rounds, 0);
  EXPECT_EQ(r->subset, 0);

  RsaConfig cfg;
  cfg.mode = "parallel";
  r = ResolveRsaParams({}, cfg, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mode, RsaMode::kParallel);
  EXPECT_EQ(r->rounds, 0);

  // rsa with T = 0 degenerates to parallel sampling.
  SolveParams t0;
  t0.rounds = 0;
  r = ResolveRsaParams(t0, RsaConfig{}, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->subset, 0);
}

TEST(RsaParamsTest, ContradictionsAndLimitsNameTheField) {
  SolveParams s;
  s.mode = "single";
  s.population = 4;
  ExpectError(s, "population = 4 contradicts mode = \"single\"");
  s = {};
  s.mode = "parallel";
  s.rounds = 2;
  ExpectError(s, "rounds = 2 contradicts");
  s = {};
  s.mode = "best";
  ExpectError(s, "mode = \"best\"");
  s = {};
  s.population = 65;
  ExpectError(s, "population = 65 is out of range; allowed 1..64 (rsa.max_population)");
  s = {};
  s.population = 0;
  ExpectError(s, "population = 0");
  s = {};
  s.rounds = 9;
  ExpectError(s, "rsa.max_rounds");
  s = {};
  s.subset = 17;
  ExpectError(s, "subset = 17 is out of range; allowed 1..16");
  s = {};
  s.subset = 0;
  ExpectError(s, "subset = 0");
  s = {};
  s.tail = 8193;
  ExpectError(s, "rsa.max_tail");
  s = {};
  s.budget = 40000;
  ExpectError(s, "budget = 40000");
  s = {};
  s.temperature = -1;
  ExpectError(s, "temperature");
  s = {};
  s.top_p = 0;
  ExpectError(s, "top_p");
}

TEST(RsaParamsTest, TemperatureLimitIsTheProtocolsFive) {
  // One limit everywhere (kMaxTemperature): the protocol refuses above 5, so the resolver did not
  // let 5..10 through from the config either.
  SolveParams s;
  s.temperature = kMaxTemperature;
  auto edge = ResolveRsaParams(s, {}, 0);
  ASSERT_TRUE(edge.ok()) << edge.status().ToString();
  EXPECT_DOUBLE_EQ(edge->temperature, 5.0);
  s.temperature = 5.01;
  ExpectError(s, "temperature = 5.010000 is out of range; allowed 0..5 (0 = greedy)");
  RsaConfig hot;
  hot.temperature = 7.0;
  ExpectError({}, "temperature = 7.000000 is out of range; allowed 0..5", hot);
}

TEST(RsaParamsTest, DefaultSubsetIsLoweredToTheRequestedPopulation) {
  // `zaya solve "q" --population 2` with the shipped subset = 4 was refused with "subset = 4 is
  // out of range; allowed 1..2" although the user never sent a subset.
  RsaConfig cfg;
  cfg.population = 8;
  cfg.subset = 4;
  SolveParams s;
  s.population = 2;
  auto r = ResolveRsaParams(s, cfg, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->population, 2);
  EXPECT_EQ(r->subset, 2);
  s.population = 1;
  r = ResolveRsaParams(s, cfg, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->subset, 1);
  // A subset at or below the population is kept as it is.
  s.population = 6;
  r = ResolveRsaParams(s, cfg, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->subset, 4);
  // One the request sends is still checked.
  s.population = 2;
  s.subset = 3;
  ExpectError(s, "subset = 3 is out of range; allowed 1..2 (at most population)", cfg);
}

TEST(RsaParamsTest, TailIsClampedToBudget) {
  SolveParams s;
  s.tail = 8000;
  s.budget = 1000;
  auto r = ResolveRsaParams(s, RsaConfig{}, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tail, 1000);
}

TEST(RsaParamsTest, WorstCaseArithmetic) {
  RsaParams p;
  p.population = 16;
  p.subset = 4;
  p.tail = 4096;
  p.budget = 16384;
  p.rounds = 2;
  // 16 x (300 + 4 x 4096 + 16384)
  EXPECT_EQ(WorstCaseStateTokens(p, 300), 16 * (300 + 4 * 4096 + 16384));
  EXPECT_EQ(WorstCaseGeneratedTokens(p), 16 * 16384 * 3);  // ~786K, RSA.md's order of magnitude
  p.subset = 0;
  p.rounds = 0;
  EXPECT_EQ(WorstCaseStateTokens(p, 300), 16 * (300 + 16384));
}

}  // namespace
}  // namespace zaya
