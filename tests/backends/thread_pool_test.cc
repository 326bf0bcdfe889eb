// The CPU backend's thread pool: how ParallelFor cuts [0, n) into chunks.
#include "thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
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

// Jobs of few chunks and of many, one after another: a worker that read the state of a job whose
// chunks were all claimed, then the chunk count of the next one (published before the state),
// used to claim a chunk past the old job's end. It ran a call outside [0, n) and counted an
// extra chunk as done, so ParallelFor could return while chunks still ran, or spin forever
// (CI hung here once, in ChunksAreNonEmptyAndCoverTheRangeOnce, with pending at -3).
TEST(ThreadPool, AlternatingChunkCountsNeverRunOutsideTheJob) {
  for (int threads : {3, 8}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(64);
    for (int round = 0; round < 200000; ++round) {
      const int64_t n = round % 2 == 0 ? 2 : 8 * threads;
      for (int64_t i = 0; i < n; ++i) hits[i].store(0, std::memory_order_relaxed);
      std::atomic<int> outside{0};
      pool.ParallelFor(n, 1, [&](int64_t begin, int64_t end, int) {
        if (begin < 0 || begin >= end || end > n) {
          outside.fetch_add(1);
          return;
        }
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      });
      // Every call has returned, so every item was covered exactly once.
      ASSERT_EQ(outside.load(), 0) << threads << " threads, round " << round;
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[i].load(), 1) << threads << " threads, round " << round << ", item " << i;
      }
    }
  }
}

}  // namespace
}  // namespace zaya::cpu
