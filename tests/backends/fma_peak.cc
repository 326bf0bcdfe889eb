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
    // Ten independent accumulators in named registers (an array stays in memory at -O2) cover
    // the FMA latency (4 cycles) on two FMA pipes.
    __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.1f), a2 = _mm256_set1_ps(0.2f),
           a3 = _mm256_set1_ps(0.3f), a4 = _mm256_set1_ps(0.4f), a5 = _mm256_set1_ps(0.5f),
           a6 = _mm256_set1_ps(0.6f), a7 = _mm256_set1_ps(0.7f), a8 = _mm256_set1_ps(0.8f),
           a9 = _mm256_set1_ps(0.9f);
    const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
    constexpr long kIters = 50'000'000;
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < kIters; ++i) {
      a0 = _mm256_fmadd_ps(a0, b, c);
      a1 = _mm256_fmadd_ps(a1, b, c);
      a2 = _mm256_fmadd_ps(a2, b, c);
      a3 = _mm256_fmadd_ps(a3, b, c);
      a4 = _mm256_fmadd_ps(a4, b, c);
      a5 = _mm256_fmadd_ps(a5, b, c);
      a6 = _mm256_fmadd_ps(a6, b, c);
      a7 = _mm256_fmadd_ps(a7, b, c);
      a8 = _mm256_fmadd_ps(a8, b, c);
      a9 = _mm256_fmadd_ps(a9, b, c);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const __m256 sum = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)),
                      _mm256_add_ps(a8, a9)));
    const float sink = _mm256_cvtss_f32(sum);  // keeps the loop alive
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
