#include "engine/rsa/tails.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace zaya {
namespace {

TEST(TailsTest, KeepsExactlyTheLastTauTokens) {
  std::vector<int32_t> trace(10);
  std::iota(trace.begin(), trace.end(), 100);
  Tail t = TakeTail(trace, 4);
  EXPECT_EQ(t.tokens, (std::vector<int32_t>{106, 107, 108, 109}));
  EXPECT_TRUE(t.truncated);
}

TEST(TailsTest, ShortTraceIsKeptWhole) {
  const std::vector<int32_t> trace = {1, 2, 3};
  Tail t = TakeTail(trace, 3);
  EXPECT_EQ(t.tokens, trace);
  EXPECT_FALSE(t.truncated);
  t = TakeTail(trace, 4096);
  EXPECT_EQ(t.tokens, trace);
  EXPECT_FALSE(t.truncated);
}

TEST(TailsTest, EdgeCases) {
  const std::vector<int32_t> trace = {1, 2, 3};
  Tail t = TakeTail(trace, 0);
  EXPECT_TRUE(t.tokens.empty());
  EXPECT_TRUE(t.truncated);
  t = TakeTail(std::vector<int32_t>{}, 5);
  EXPECT_TRUE(t.tokens.empty());
  EXPECT_FALSE(t.truncated);
  t = TakeTail(trace, -2);
  EXPECT_TRUE(t.tokens.empty());
}

TEST(TailsTest, EveryLengthIsExact) {
  std::vector<int32_t> trace(50);
  std::iota(trace.begin(), trace.end(), 0);
  for (int tau = 0; tau <= 60; ++tau) {
    Tail t = TakeTail(trace, tau);
    const size_t want = std::min<size_t>(tau, 50);
    ASSERT_EQ(t.tokens.size(), want);
    ASSERT_EQ(t.truncated, want < 50);
    if (want > 0) {
      ASSERT_EQ(t.tokens.front(), static_cast<int32_t>(50 - want));
      ASSERT_EQ(t.tokens.back(), 49);
    }
  }
}

}  // namespace
}  // namespace zaya
