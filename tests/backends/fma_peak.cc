#include "fma_peak.h"

#include <immintrin.h>

#include <chrono>
#include <thread>
#include <vector>

// Built with -mavx2 -mfma (tests/backends/CMakeLists.txt); callers check the CPU first.
namespace zaya::bench {

double FmaPeakGmacs(int threads) {
  std::vector<double> rates(static_cast<size_t>(threads));
  auto run = [&rates](int t) {
    // Ten independent accumulators cover the FMA latency (4 cycles) on two FMA pipes.
    __m256 a[10];
    for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(0.1f * static_cast<float>(i));
    const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
    constexpr long kIters = 50'000'000;
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < kIters; ++i) {
      for (auto& v : a) v = _mm256_fmadd_ps(v, b, c);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    float sink = 0;
    for (const auto& v : a) sink += v[0];
    rates[static_cast<size_t>(t)] = kIters * 10.0 * 8 / s / 1e9 + (sink == 12345.f ? 1e-9 : 0.0);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(run, t);
  run(0);
  for (auto& th : pool) th.join();
  double total = 0;
  for (double r : rates) total += r;
  return total;
}

}  // namespace zaya::bench
