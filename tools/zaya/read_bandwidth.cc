#include "tools/zaya/read_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>

namespace zaya::cli {
namespace {

using Clock = std::chrono::steady_clock;

// One thread's pass over words [0, n) of `base` as S interleaved streams, with software prefetch
// 1 KiB ahead, each stream `skew` cache lines shorter than n / S so that the streams start that
// far off a power-of-two spacing. Returns a sum so that the loads cannot be dropped. S is a
// template argument so that the accumulators stay in registers: with a runtime stream count they
// lived on the stack, and that loop read 15-20% less than the decode tiles pull (session 10).
template <size_t S>
uint64_t Streams(const uint64_t* base, size_t n, size_t skew) {
  using V = uint64_t __attribute__((vector_size(32)));
  constexpr size_t kLine = 8, kAhead = 1024 / sizeof(uint64_t);
  const size_t per = n / S / kLine * kLine;
  // A slice too small to skew (thousands of threads on a small buffer) is read unskewed.
  const size_t len = per > 2 * skew * kLine ? per - skew * kLine : per;
  V acc[S] = {};
  for (size_t i = 0; i < len; i += kLine) {
    for (size_t s = 0; s < S; ++s) {
      const uint64_t* p = base + s * len + i;
      __builtin_prefetch(p + kAhead);
      V a, b;
      std::memcpy(&a, p, sizeof(V));
      std::memcpy(&b, p + 4, sizeof(V));
      acc[s] += a + b;
    }
  }
  uint64_t total = 0;
  for (size_t i = S * len; i < n; ++i) total += base[i];
  for (const V& a : acc) total += a[0] + a[1] + a[2] + a[3];
  return total;
}

}  // namespace

BandwidthWords BandwidthBuffer(size_t bytes) {
  BandwidthWords buf(bytes / sizeof(uint64_t));
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
  return buf;
}

uint64_t SumAsStreams(const uint64_t* base, size_t n, size_t streams, size_t skew) {
  switch (streams) {
    case 1:
      return Streams<1>(base, n, skew);
    case 2:
      return Streams<2>(base, n, skew);
    case 4:
      return Streams<4>(base, n, skew);
    case 8:
      return Streams<8>(base, n, skew);
    default:
      throw std::invalid_argument("SumAsStreams: streams must be 1, 2, 4 or 8, not " +
                                  std::to_string(streams));
  }
}

// The machine's attainable read bandwidth (the roofline's denominator): `threads` threads each
// sum their slice of a buffer far larger than the last-level cache, in every pattern below; the
// best pass of any. A roofline must be a peak, and which pattern reads fastest changes with the
// machine, so the measure takes the best of several:
// - 1, 2, 4 or 8 interleaved streams per thread, each stream exactly n / S apart or 37 cache
//   lines off that spacing. Zen 3 (sessions 3-4) read best with 4 or 8 skewed streams: streams
//   2^n bytes apart landed in the same DRAM banks and measured 10-20% lower. Zen 5 (session 10,
//   two threads) reads best with 2 skewed or 4 unskewed streams (46-49 GB/s), and 4 or 8 skewed
//   ones, the old patterns, read 34-40.
// History: one plain stream per thread until session 3 (70-85% of what the tiles pulled), then 4
// and 8 skewed streams with a runtime stream count until session 9, which put Zen 5's batch-1
// decode at 100-117% of that "roofline". The best of `reps` passes: other processes only ever slow
// a pass down.
double ReadBandwidthOn(const BandwidthWords& buf, int threads, int reps) {
  const size_t words = buf.size();
  double best = 0;
  volatile uint64_t sink = 0;
  auto pass = [&](size_t streams, size_t skew) {
    std::vector<uint64_t> sums(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t begin = words * t / threads, end = words * (t + 1) / threads;
        sums[t] = SumAsStreams(buf.data() + begin, end - begin, streams, skew);
      });
    }
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink + std::accumulate(sums.begin(), sums.end(), uint64_t{0});
    best = std::max(best, static_cast<double>(words * sizeof(uint64_t)) / s);
  };
  for (int r = 0; r < reps; ++r) {
    for (const size_t skew : {size_t{0}, size_t{37}}) {
      for (const size_t streams : {size_t{1}, size_t{2}, size_t{4}, size_t{8}}) pass(streams, skew);
    }
  }
  return best;
}

}  // namespace zaya::cli
