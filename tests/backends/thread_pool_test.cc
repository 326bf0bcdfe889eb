// The CPU backend's thread pool: how ParallelFor cuts [0, n) into chunks.
#include "thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace zaya::cpu {
namespace {

// Every chunk is non-empty, the chunks cover [0, n) exactly once, there are at most as many as
// threads, and all but the last hold at least `grain` items. Until session 16 the chunk count
// was min(n / grain, threads) whatever the chunk size that gave: n = 17 on 16 threads ran 16
// chunks of 2, and the last 7 were called with begin > end (past n).
TEST(ThreadPool, ChunksAreNonEmptyAndCoverTheRangeOnce) {
  for (int threads : {1, 2, 3, 5, 16}) {
    ThreadPool pool(threads);
    for (int64_t grain : {1, 3, 64}) {
      for (int64_t n = 1; n <= 70; ++n) {
        SCOPED_TRACE(std::to_string(threads) + " threads, grain " + std::to_string(grain) + ", n " +
                     std::to_string(n));
        std::mutex mu;
        std::vector<std::pair<int64_t, int64_t>> calls;
        pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end, int) {
          std::lock_guard lock(mu);
          calls.emplace_back(begin, end);
        });
        std::sort(calls.begin(), calls.end());
        ASSERT_FALSE(calls.empty());
        EXPECT_LE(static_cast<int>(calls.size()), threads);
        int64_t at = 0;
        for (size_t i = 0; i < calls.size(); ++i) {
          EXPECT_EQ(calls[i].first, at);
          EXPECT_LT(calls[i].first, calls[i].second);
          if (i + 1 < calls.size() && calls.size() > 1) {
            EXPECT_GE(calls[i].second - calls[i].first, grain);
          }
          at = calls[i].second;
        }
        EXPECT_EQ(at, n);
      }
    }
  }
}

}  // namespace
}  // namespace zaya::cpu
