#include "engine/rsa/subsets.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace zaya {
namespace {

TEST(SubsetsTest, DistinctIndicesInRangeForManySeeds) {
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Rng rng(seed);
    auto r = DrawSubsets(16, 4, 16, rng);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->size(), 16u);
    for (const auto& s : *r) {
      ASSERT_EQ(s.size(), 4u);
      std::set<int> uniq(s.begin(), s.end());
      ASSERT_EQ(uniq.size(), 4u) << "seed " << seed;
      for (int i : s) ASSERT_TRUE(i >= 0 && i < 16);
    }
  }
}

TEST(SubsetsTest, FullSubsetIsAPermutation) {
  Rng rng(3);
  auto r = DrawSubsets(5, 8, 8, rng);
  ASSERT_TRUE(r.ok());
  for (const auto& s : *r) EXPECT_EQ(std::set<int>(s.begin(), s.end()).size(), 8u);
}

TEST(SubsetsTest, SameSeedSameSubsets) {
  Rng a(11), b(11), c(12);
  auto ra = *DrawSubsets(8, 3, 10, a);
  auto rb = *DrawSubsets(8, 3, 10, b);
  auto rc = *DrawSubsets(8, 3, 10, c);
  EXPECT_EQ(ra, rb);
  EXPECT_NE(ra, rc);
}

TEST(SubsetsTest, UniformOverIndicesAndPositions) {
  // Each index should appear in each of the C positions with probability 1/N.
  const int n = 6, c = 3, members = 20000;
  Rng rng(77);
  auto r = *DrawSubsets(members, c, n, rng);
  std::vector<std::vector<int>> count(c, std::vector<int>(n, 0));
  for (const auto& s : r) {
    for (int k = 0; k < c; ++k) ++count[k][s[k]];
  }
  const double expected = static_cast<double>(members) / n;
  for (int k = 0; k < c; ++k) {
    double chi2 = 0;
    for (int i = 0; i < n; ++i) {
      chi2 += (count[k][i] - expected) * (count[k][i] - expected) / expected;
    }
    EXPECT_LT(chi2, 20.52) << "position " << k;  // 5 dof, p = 0.001
  }
  // Members are independent: not every member got the same subset.
  EXPECT_NE(r[0], r[1]);
}

TEST(SubsetsTest, Errors) {
  Rng rng(1);
  auto r = DrawSubsets(4, 5, 4, rng);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("C <= N"), std::string::npos);
  EXPECT_FALSE(DrawSubsets(0, 1, 4, rng).ok());
  EXPECT_FALSE(DrawSubsets(1, 0, 4, rng).ok());
  EXPECT_FALSE(DrawSubsets(1, 1, 0, rng).ok());
}

}  // namespace
}  // namespace zaya
