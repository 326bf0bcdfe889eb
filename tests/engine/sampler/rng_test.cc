#include "engine/sampler/rng.h"

#include <gtest/gtest.h>

#include <vector>

namespace zaya {
namespace {

TEST(RngTest, SplitMix64MatchesReferenceVector) {
  // Reference: Vigna's splitmix64.c with x = 0; first outputs.
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(&state), 0xe220a8397b1dcdafull);
  EXPECT_EQ(SplitMix64(&state), 0x6e789e6aa1b965f4ull);
  EXPECT_EQ(SplitMix64(&state), 0x06c45d188009454full);
}

TEST(RngTest, SameSeedSameStreamDifferentSeedDifferentStream) {
  Rng a(42), b(42), c(43);
  std::vector<uint64_t> va, vb, vc;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.Next());
    vb.push_back(b.Next());
    vc.push_back(c.Next());
  }
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
}

TEST(RngTest, PinnedOutputSoStreamsStayPortable) {
  // Guards against accidental changes of the generator: recorded once, must never change.
  Rng rng(12345);
  const uint64_t first = rng.Next();
  Rng again(12345);
  EXPECT_EQ(again.Next(), first);
  EXPECT_EQ(first, 0xbe6a36374160d49bull);  // computed independently in Python
}

TEST(RngTest, DoubleInUnitIntervalAndBelowInRange) {
  Rng rng(7);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const double d = rng.NextDouble();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    sum += d;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const uint64_t v = rng.Below(7);
    ASSERT_LT(v, 7u);
    ++counts[v];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
  EXPECT_EQ(rng.Below(1), 0u);
}

TEST(RngTest, DerivedSeedsDiffer) {
  EXPECT_NE(DeriveSeed(1, 0), DeriveSeed(1, 1));
  EXPECT_NE(DeriveSeed(1, 0), DeriveSeed(2, 0));
  EXPECT_EQ(DeriveSeed(5, 3), DeriveSeed(5, 3));
}

}  // namespace
}  // namespace zaya
