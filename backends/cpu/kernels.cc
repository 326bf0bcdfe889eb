#include "kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace zaya::cpu {

#define ZAYA_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))

namespace {

ZAYA_CLONES float DotF32(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

ZAYA_CLONES float DotBf16(const float* x, const uint16_t* w, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits = static_cast<uint32_t>(w[i]) << 16;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    acc += x[i] * f;
  }
  return acc;
}

ZAYA_CLONES float DotI8(const float* x, const int8_t* w, const float* scales, int64_t n) {
  float total = 0.f;
  for (int64_t b = 0; b < n; b += 32) {
    const int64_t len = std::min<int64_t>(32, n - b);
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < len; ++i) acc += x[b + i] * static_cast<float>(w[b + i]);
    total += acc * scales[b / 32];
  }
  return total;
}

}  // namespace

float DotRow(const Weights& w, int64_t n, int64_t k, const float* x) {
  switch (w.type) {
    case WType::kF32: return DotF32(x, static_cast<const float*>(w.data) + n * k, k);
    case WType::kBF16: return DotBf16(x, static_cast<const uint16_t*>(w.data) + n * k, k);
    case WType::kI8:
      return DotI8(x, static_cast<const int8_t*>(w.data) + n * k, w.scales + n * ((k + 31) / 32), k);
  }
  return 0.f;
}

void RowToF32(const Weights& w, int64_t n, int64_t k, float* out) {
  switch (w.type) {
    case WType::kF32: {
      const float* src = static_cast<const float*>(w.data) + n * k;
      std::copy(src, src + k, out);
      return;
    }
    case WType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + n * k;
      for (int64_t i = 0; i < k; ++i) out[i] = Bf16ToF32(src[i]);
      return;
    }
    case WType::kI8: {
      const int8_t* src = static_cast<const int8_t*>(w.data) + n * k;
      const float* sc = w.scales + n * ((k + 31) / 32);
      for (int64_t i = 0; i < k; ++i) out[i] = static_cast<float>(src[i]) * sc[i / 32];
      return;
    }
  }
}

float ApplyAct(Act act, float v) {
  switch (act) {
    case Act::kNone: return v;
    case Act::kGelu: return 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f));
    case Act::kSilu: return v / (1.f + std::exp(-v));
  }
  return v;
}

void MatMul(ThreadPool& pool, const float* x, int64_t t, int64_t k, const Weights& w, int64_t n,
            const float* bias, Act act, float* y) {
  // Few tokens: stream each weight row once and dot it with every token (bandwidth-bound decode).
  // Many tokens: convert a panel of weight rows to f32 and let OpenBLAS run the panel's GEMM.
  // Below this many rows every output is the same per-row dot product whatever the batch, so a
  // sequence decodes the same tokens alone or batched with others (seeded runs are reproducible).
  constexpr int64_t kGemmMinTokens = 64;
  if (t < kGemmMinTokens || k < 16) {
    pool.ParallelFor(n, 16, [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin; r < end; ++r) {
        const float b = bias != nullptr ? bias[r] : 0.f;
        for (int64_t i = 0; i < t; ++i) y[i * n + r] = ApplyAct(act, DotRow(w, r, k, x + i * k) + b);
      }
    });
    return;
  }
  constexpr int64_t kPanel = 64;
  const int64_t panels = (n + kPanel - 1) / kPanel;
  pool.ParallelFor(panels, 1, [&](int64_t begin, int64_t end, int) {
    std::vector<float> panel;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t r0 = p * kPanel;
      const int64_t rows = std::min(kPanel, n - r0);
      const float* wp;
      if (w.type == WType::kF32) {
        wp = static_cast<const float*>(w.data) + r0 * k;
      } else {
        panel.resize(static_cast<size_t>(rows * k));
        for (int64_t r = 0; r < rows; ++r) RowToF32(w, r0 + r, k, panel.data() + r * k);
        wp = panel.data();
      }
      // y[:, r0:r0+rows] = x[t,k] * wp[rows,k]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(t),
                  static_cast<int>(rows), static_cast<int>(k), 1.f, x, static_cast<int>(k), wp,
                  static_cast<int>(k), 0.f, y + r0, static_cast<int>(n));
      if (bias != nullptr || act != Act::kNone) {
        for (int64_t i = 0; i < t; ++i) {
          float* row = y + i * n + r0;
          for (int64_t r = 0; r < rows; ++r) {
            row[r] = ApplyAct(act, row[r] + (bias != nullptr ? bias[r0 + r] : 0.f));
          }
        }
      }
    }
  });
}

void RmsNorm(ThreadPool& pool, const float* x, const float* w_f32, const uint16_t* w_bf16,
             int64_t t, int64_t n, float eps, float* y) {
  pool.ParallelFor(t, 4, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const float* xi = x + i * n;
      float* yi = y + i * n;
      double ss = 0.0;
      for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xi[j]) * xi[j];
      const float inv = 1.f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
      for (int64_t j = 0; j < n; ++j) {
        const float wj = w_f32 != nullptr ? w_f32[j] : Bf16ToF32(w_bf16[j]);
        yi[j] = xi[j] * inv * wj;
      }
    }
  });
}

}  // namespace zaya::cpu
