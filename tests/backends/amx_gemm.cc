#include "amx_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels.h"
#include "kernels_amx.h"

namespace zaya::bench {
namespace {

uint16_t ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Rows [n0, n1) (multiples of 32) of y; tiles 0-3 accumulate, 4-5 hold x, 6-7 two row blocks.
void Gemm(const uint16_t* x, const uint16_t* w, float* y, int64_t t, int64_t n, int64_t k,
          int64_t n0, int64_t n1) {
  cpu::amx::TileConfig cfg;
  for (int i = 0; i < 8; ++i) cfg.Set(i, 16, 64);
  _tile_loadconfig(&cfg);
  for (int64_t b = n0 / 16; b < n1 / 16; b += 2) {
    const uint16_t* w0 = w + b * 16 * k;
    const uint16_t* w1 = w0 + 16 * k;
    for (int64_t t0 = 0; t0 < t; t0 += 32) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t c = 0; c < k; c += 32) {
        _tile_loadd(4, x + t0 * k + c, static_cast<int>(k * 2));
        _tile_loadd(5, x + (t0 + 16) * k + c, static_cast<int>(k * 2));
        _tile_loadd(6, w0 + 16 * c, 64);
        _tile_loadd(7, w1 + 16 * c, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      float* out = y + t0 * n + b * 16;
      _tile_stored(0, out, static_cast<int>(n * 4));
      _tile_stored(1, out + 16, static_cast<int>(n * 4));
      _tile_stored(2, out + 16 * n, static_cast<int>(n * 4));
      _tile_stored(3, out + 16 * n + 16, static_cast<int>(n * 4));
    }
  }
  _tile_release();
}

}  // namespace

std::string AmxUnavailable() { return cpu::amx::TileDataUnavailable(); }

bool RunAmxGemm(int threads) {
  const int64_t t = 512, n = 2048, k = 2048;
  std::vector<uint16_t> x(static_cast<size_t>(t * k)), w(static_cast<size_t>(n * k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = ToBf16(std::sin(static_cast<float>(i) * 0.37f));
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = ToBf16(0.05f * std::cos(static_cast<float>(i) * 0.11f));
  }
  std::vector<uint16_t> packed = w;
  cpu::PackBf16Tiles(packed.data(), n, k);
  std::vector<float> y(static_cast<size_t>(t * n));
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int p = 0; p < threads; ++p) {
      // Whole pairs of 16-row blocks per thread.
      const int64_t pairs = n / 32, b0 = pairs * p / threads, b1 = pairs * (p + 1) / threads;
      pool.emplace_back(
          [&, b0, b1] { Gemm(x.data(), packed.data(), y.data(), t, n, k, b0 * 32, b1 * 32); });
    }
    for (auto& th : pool) th.join();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  double worst = 0;
  for (int64_t i = 0; i < t; i += 37) {
    for (int64_t r = 0; r < n; r += 41) {
      double want = 0;
      for (int64_t j = 0; j < k; ++j) {
        want += static_cast<double>(cpu::Bf16ToF32(x[i * k + j])) * cpu::Bf16ToF32(w[r * k + j]);
      }
      worst = std::max(worst, std::fabs(want - y[i * n + r]) / (1 + std::fabs(want)));
    }
  }
  std::printf(
      "AMX bf16 GEMM, %lld tokens x %lld x %lld, tile layout, %d threads: %.2f ms, %.0f GFLOP/s "
      "(largest error %.1e against double)\n",
      static_cast<long long>(t), static_cast<long long>(n), static_cast<long long>(k), threads,
      best * 1e3, 2.0 * static_cast<double>(t * n * k) / best / 1e9, worst);
  return worst < 1e-4;
}

}  // namespace zaya::bench
