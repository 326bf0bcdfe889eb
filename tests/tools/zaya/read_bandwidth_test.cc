#include "tools/zaya/read_bandwidth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace zaya::cli {
namespace {

// Every pattern must read each word exactly once: a stream that skipped its last lines, or two
// that overlapped, would change how many bytes a pass really read and so the bandwidth it reports.
TEST(ReadBandwidthTest, EveryPatternSumsEveryWordOnce) {
  // Words that differ in every bit position, so that a word read twice or skipped shows.
  std::vector<uint64_t> words(70'001);
  for (size_t i = 0; i < words.size(); ++i) words[i] = (i + 1) * 0x9e3779b97f4a7c15ull;
  // Short slices (no skew possible), slices just past a line, odd lengths, long ones.
  for (const size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{63},
                         size_t{64}, size_t{600}, size_t{4'801}, size_t{70'001}}) {
    const uint64_t want = std::accumulate(words.begin(), words.begin() + n, uint64_t{0});
    for (const size_t streams : {size_t{1}, size_t{2}, size_t{4}, size_t{8}}) {
      for (const size_t skew : {size_t{0}, size_t{37}}) {
        EXPECT_EQ(SumAsStreams(words.data(), n, streams, skew), want)
            << n << " words as " << streams << " streams, skew " << skew;
      }
    }
  }
}

TEST(ReadBandwidthTest, UnsupportedStreamCountsAreRefusedByName) {
  const std::vector<uint64_t> words(64, 1);
  try {
    SumAsStreams(words.data(), words.size(), 3, 0);
    FAIL() << "3 streams accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not 3"), std::string::npos) << e.what();
  }
}

// The whole measure on a small buffer with more threads than cores and an odd split: a positive,
// finite rate (no timing is asserted: speeds belong to `zaya bench`).
TEST(ReadBandwidthTest, MeasureReturnsAPositiveRate) {
  const BandwidthWords buf = BandwidthBuffer((4 << 20) + 24);
  ASSERT_EQ(buf.size(), ((4u << 20) + 24) / 8);
  for (const int threads : {1, 3}) {
    const double bw = ReadBandwidthOn(buf, threads, 1);
    EXPECT_TRUE(std::isfinite(bw) && bw > 0) << threads << " threads: " << bw;
  }
}

}  // namespace
}  // namespace zaya::cli
