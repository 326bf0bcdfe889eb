#include "engine/sampler/sampler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace zaya {
namespace {

Sampler Make(double temperature, int top_k = 0, double top_p = 1.0, double min_p = 0.0,
             uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  auto s = Sampler::Create(p);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

// Logits whose softmax (temperature 1) is exactly proportional to `probs`.
std::vector<float> LogitsFor(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) {
    l.push_back(p > 0 ? static_cast<float>(std::log(p)) : -std::numeric_limits<float>::infinity());
  }
  return l;
}

std::vector<int32_t> Ids(const std::vector<TokenProb>& c) {
  std::vector<int32_t> ids;
  for (const auto& t : c) ids.push_back(t.id);
  return ids;
}

TEST(SamplerTest, RejectsInvalidParams) {
  SamplingParams p;
  p.temperature = -0.5;
  EXPECT_EQ(Sampler::Create(p).status().code(), StatusCode::kInvalidArgument);
  p = {};
  p.temperature = std::nan("");
  EXPECT_FALSE(Sampler::Create(p).ok());
  p = {};
  p.top_p = 0.0;
  EXPECT_NE(Sampler::Create(p).status().message().find("top_p"), std::string::npos);
  p = {};
  p.top_p = 1.5;
  EXPECT_FALSE(Sampler::Create(p).ok());
  p = {};
  p.min_p = -0.1;
  EXPECT_FALSE(Sampler::Create(p).ok());
  p = {};
  p.top_k = -1;
  EXPECT_FALSE(Sampler::Create(p).ok());
}

// Rejected values were printed with std::to_string's six decimals: top_p = 1.0000001 read
// "top_p = 1.000000 is not allowed", a value that is allowed.
TEST(SamplerTest, RejectedValuesArePrintedExactly) {
  auto message = [](SamplingParams p) { return Sampler::Create(p).status().message(); };
  SamplingParams p;
  p.top_p = 1.0000001;
  EXPECT_EQ(message(p), "top_p = 1.0000001 is not allowed; use a value in (0, 1] (1 = off)");
  p = {};
  p.min_p = 1.0000000000000002;
  EXPECT_EQ(message(p).substr(0, 27), "min_p = 1.0000000000000002 ");
  p = {};
  p.temperature = -1e-300;
  EXPECT_EQ(message(p).substr(0, 23), "temperature = -1e-300 i");
}

// A temperature below ~3e-39 made 1 / temperature +inf as a float: the top token's weight was
// 0 * inf = NaN and Candidates reported a NaN probability. It is greedy now.
TEST(SamplerTest, TemperaturesTooSmallForAFloatInverseAreGreedy) {
  for (double t : {1e-39, 5e-324}) {
    Sampler s = Make(t);
    EXPECT_TRUE(s.greedy()) << t;
    auto c = s.Candidates(std::vector<float>{1, 3, 2, 3});
    ASSERT_EQ(c.size(), 1u) << t;
    EXPECT_EQ(c[0].id, 1);
    EXPECT_EQ(c[0].prob, 1.0) << t;
    EXPECT_EQ(s.Sample(std::vector<float>{1, 3, 2, 3}), 1);
  }
  // Just above the edge the float inverse is finite and sampling stays exact: the ties share.
  auto c = Make(1e-37).Candidates(std::vector<float>{1, 3, 2, 3});
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].prob, 0.5);
}

TEST(SamplerTest, GreedyTakesArgmaxWithTiesToLowestId) {
  Sampler s = Make(0.0);
  EXPECT_TRUE(s.greedy());
  EXPECT_EQ(s.Sample(std::vector<float>{1, 5, 3, 5, 5}), 1);
  EXPECT_EQ(s.Sample(std::vector<float>{-2, -1, -1}), 1);
  const float nan = std::nanf("");
  EXPECT_EQ(s.Sample(std::vector<float>{nan, 0.5f, nan, 0.7f}), 3);
  // top_k = 1 is greedy too, at any temperature.
  Sampler k1 = Make(1.5, 1);
  EXPECT_TRUE(k1.greedy());
  EXPECT_EQ(k1.Sample(std::vector<float>{2, 9, 9}), 1);
}

TEST(SamplerTest, InfinitiesAndAllMaskedAreHandled) {
  const float inf = std::numeric_limits<float>::infinity();
  Sampler s = Make(1.0);
  EXPECT_EQ(s.Sample(std::vector<float>{0, inf, 3, inf}), 1);
  EXPECT_EQ(s.Sample(std::vector<float>{-inf, -inf, -inf}), 0);
  // -inf tokens are never drawn.
  for (int i = 0; i < 200; ++i) {
    const int32_t t = s.Sample(std::vector<float>{-inf, 0, -inf, 0});
    ASSERT_TRUE(t == 1 || t == 3) << t;
  }
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDiffers) {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(i * 0.37));
  auto run = [&](uint64_t seed) {
    Sampler s = Make(1.0, 0, 0.95, 0.0, seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.Sample(logits));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(SamplerTest, TopKMaskIsExact) {
  Sampler s = Make(1.0, 3);
  // Ties at the cut (ids 2 and 4 both 0.5) keep the lower id.
  auto c = s.Candidates(std::vector<float>{0.1f, 2.0f, 0.5f, 1.0f, 0.5f, -3.0f});
  EXPECT_EQ(Ids(c), (std::vector<int32_t>{1, 3, 2}));
  double sum = 0;
  for (const auto& t : c) sum += t.prob;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_NEAR(c[0].prob, std::exp(2.0) / (std::exp(2.0) + std::exp(1.0) + std::exp(0.5)), 1e-6);
}

// With top-k and no top-p the draw walked the k survivors in the order nth_element left them, which
// the standard library chooses: the same seed drew different tokens under libstdc++ and libc++. It
// walks them by ascending id, as the sampler.h contract says; here checked against that walk done
// by hand.
TEST(SamplerTest, TopKDrawsWalkTheSurvivorsInAscendingIdOrder) {
  // A permutation of -0/16 .. -63/16: the weights lie within a factor of 2^6, so their double sum
  // is exact in any order and only the walk order can make a difference.
  std::vector<float> logits(64);
  for (size_t i = 0; i < logits.size(); ++i) {
    logits[i] = -static_cast<float>((i * 37) % 64) / 16.0f;
  }
  const int k = 20;
  std::vector<int32_t> kept;  // the k largest logits, ascending id
  std::vector<float> w(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    w[i] = std::exp((logits[i] - 0.0f) * 1.0f);  // as the sampler computes it; the max logit is 0
    if ((i * 37) % 64 < static_cast<size_t>(k)) {
      kept.push_back(static_cast<int32_t>(i));
      total += w[i];
    }
  }
  int differ_from_weight_order = 0;
  for (uint64_t seed = 1; seed <= 2000; ++seed) {
    Rng rng(seed);
    const double u = rng.NextDouble() * total;
    double acc = 0;
    int32_t want = kept.back();
    for (int32_t id : kept) {
      acc += w[id];
      if (u < acc) {
        want = id;
        break;
      }
    }
    Sampler s = Make(1.0, k, 1.0, 0.0, seed);
    ASSERT_EQ(s.Sample(logits), want) << "seed " << seed;
    differ_from_weight_order += want != Make(1.0, k, 0.9999999, 0.0, seed).Sample(logits);
  }
  // The check has teeth: another walk order (here top-p's, most probable first) draws otherwise.
  EXPECT_GT(differ_from_weight_order, 100);
}

TEST(SamplerTest, TopPMaskIsExact) {
  const auto logits = LogitsFor({0.05, 0.4, 0.3, 0.15, 0.1});
  // Cumulative mass most-probable first: 0.4, 0.7, 0.85, 0.95, 1.0.
  EXPECT_EQ(Ids(Make(1.0, 0, 0.4).Candidates(logits)), (std::vector<int32_t>{1}));
  EXPECT_EQ(Ids(Make(1.0, 0, 0.41).Candidates(logits)), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(Ids(Make(1.0, 0, 0.8).Candidates(logits)), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(Ids(Make(1.0, 0, 0.9).Candidates(logits)), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(Make(1.0, 0, 1.0).Candidates(logits).size(), 5u);
  // top-p applies to the top-k distribution: top-2 renormalised = {4/7, 3/7}; 0.5 keeps one.
  EXPECT_EQ(Ids(Make(1.0, 2, 0.5).Candidates(logits)), (std::vector<int32_t>{1}));
  EXPECT_EQ(Ids(Make(1.0, 2, 0.6).Candidates(logits)), (std::vector<int32_t>{1, 2}));
}

TEST(SamplerTest, MinPMaskIsExact) {
  const auto logits = LogitsFor({0.05, 0.4, 0.3, 0.15, 0.1});
  // Threshold min_p * 0.4.
  EXPECT_EQ(Ids(Make(1.0, 0, 1.0, 0.5).Candidates(logits)), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(Ids(Make(1.0, 0, 1.0, 0.3).Candidates(logits)), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(Ids(Make(1.0, 0, 1.0, 1.0).Candidates(logits)), (std::vector<int32_t>{1}));
  // Combined with top-p (applied after it): top-p 0.9 keeps 4, min-p 0.3 cuts to 3.
  EXPECT_EQ(Ids(Make(1.0, 0, 0.9, 0.3).Candidates(logits)), (std::vector<int32_t>{1, 2, 3}));
}

TEST(SamplerTest, TemperatureScalesTheDistribution) {
  const auto logits = LogitsFor({0.2, 0.8});
  auto hot = Make(2.0).Candidates(logits);
  auto cold = Make(0.5).Candidates(logits);
  // p ~ q^(1/T): T=2 -> sqrt ratio, T=0.5 -> squared ratio.
  EXPECT_NEAR(hot[0].prob, 2.0 / 3.0, 1e-6);
  EXPECT_NEAR(cold[0].prob, 16.0 / 17.0, 1e-6);
}

TEST(SamplerTest, DrawsFollowTheDistribution) {
  const std::vector<double> probs = {0.05, 0.4, 0.3, 0.15, 0.1, 0.0};
  const auto logits = LogitsFor(probs);
  Sampler s = Make(1.0, 0, 1.0, 0.0, 2024);
  const int n = 100000;
  std::vector<int> counts(probs.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[s.Sample(logits)];
  EXPECT_EQ(counts[5], 0);
  double chi2 = 0;
  for (size_t i = 0; i < 5; ++i) {
    const double expected = probs[i] * n;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  // 4 degrees of freedom: P(chi2 > 18.47) = 0.001. Fixed seed, so this is deterministic.
  EXPECT_LT(chi2, 18.47) << "chi2 = " << chi2;

  // Same with top-p: the masked distribution renormalised {0.4, 0.3, 0.15} / 0.85.
  Sampler sp = Make(1.0, 0, 0.8, 0.0, 99);
  std::vector<int> c2(probs.size(), 0);
  for (int i = 0; i < n; ++i) ++c2[sp.Sample(logits)];
  EXPECT_EQ(c2[0] + c2[4] + c2[5], 0);
  chi2 = 0;
  for (int i : {1, 2, 3}) {
    const double expected = probs[i] / 0.85 * n;
    chi2 += (c2[i] - expected) * (c2[i] - expected) / expected;
  }
  EXPECT_LT(chi2, 13.82);  // 2 dof, p = 0.001
}

TEST(SamplerTest, LargeVocabTopPIsFastAndMatchesFullSort) {
  // A realistic shape: ~600 plausible tokens over a long flat tail of a 262K vocabulary.
  const size_t vocab = 262144;
  std::vector<float> logits(vocab);
  uint64_t st = 3;
  for (size_t i = 0; i < vocab; ++i) {
    const float noise = static_cast<float>((SplitMix64(&st) >> 40) % 1000) / 1000.0f;
    logits[i] = (i % 437 == 0) ? 12.0f + 4.0f * noise : 2.0f * noise;
  }
  Sampler s = Make(1.0, 0, 0.9, 0.0, 5);
  auto c = s.Candidates(logits);
  ASSERT_GT(c.size(), 64u);  // the nucleus needs more than the first sorted chunk
  ASSERT_LT(c.size(), 700u);
  // Prefix property: everything kept is at least as probable as anything dropped.
  std::vector<char> kept(vocab, 0);
  for (const auto& t : c) kept[t.id] = 1;
  float min_kept = std::numeric_limits<float>::infinity();
  float max_dropped = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < vocab; ++i) {
    if (kept[i]) {
      min_kept = std::min(min_kept, logits[i]);
    } else {
      max_dropped = std::max(max_dropped, logits[i]);
    }
  }
  EXPECT_GE(min_kept, max_dropped);
  // And the kept mass is the smallest prefix reaching 0.9 of the full distribution.
  double total = 0, kept_mass = 0;
  for (size_t i = 0; i < vocab; ++i) {
    const double w = std::exp(static_cast<double>(logits[i]) - 16.0);
    total += w;
    if (kept[i]) kept_mass += w;
  }
  EXPECT_GE(kept_mass / total, 0.9 - 1e-4);
  EXPECT_LT((kept_mass - std::exp(static_cast<double>(min_kept) - 16.0)) / total, 0.9 + 1e-4);

  Sampler plain = Make(1.0, 0, 1.0, 0.0, 5);
  Sampler topk = Make(1.0, 50, 1.0, 0.0, 5);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(kept[s.Sample(logits)]);
    ASSERT_LT(plain.Sample(logits), static_cast<int32_t>(vocab));
    ASSERT_EQ(logits[topk.Sample(logits)] >= 12.0f, true);
  }
  const double ms = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start).count();
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  // 12 draws over 262K logits in an optimised build: a full sort per draw would not fit.
  EXPECT_LT(ms, 500.0) << ms;
#else
  (void)ms;
#endif
}

}  // namespace
}  // namespace zaya
