#include "kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels_amx.h"
#include "kernels_avx2.h"
#include "kernels_avx512.h"

namespace zaya::cpu {

// ISA levels, not CPU models: GCC dispatches "arch=haswell" with __builtin_cpu_is, so an AMD CPU with
// AVX2 got the baseline clone; "arch=x86-64-v3" (AVX2+FMA) and "-v4" (AVX-512) test features.
#define ZAYA_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

namespace {

// A KV-cache value as f32, whichever of the cache dtypes it is stored in (int8: before its row's
// scale, which the caller applies).
__attribute__((always_inline)) inline float AsF32(float v) { return v; }
__attribute__((always_inline)) inline float AsF32(int8_t v) { return static_cast<float>(v); }
__attribute__((always_inline)) inline float AsF32(uint16_t v) {
  return __builtin_bit_cast(float, uint32_t{v} << 16);
}

// Attention over one KV-cache block: rows `stride` elements apart, `hd` long.
// Four rows at a time: four independent accumulators instead of one FMA latency chain per row
// (one chain made attention over a 512-token prompt ~5x slower).
template <class Row>
__attribute__((always_inline)) inline void DotRowsBody(const float* q, const Row* rows,
                                                       int64_t stride, int64_t n, int64_t hd,
                                                       float* out) {
  int64_t p = 0;
  for (; p + 4 <= n; p += 4) {
    const Row* r0 = rows + p * stride;
    const Row* r1 = r0 + stride;
    const Row* r2 = r1 + stride;
    const Row* r3 = r2 + stride;
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int64_t j = 0; j < hd; ++j) {
      a0 += q[j] * AsF32(r0[j]);
      a1 += q[j] * AsF32(r1[j]);
      a2 += q[j] * AsF32(r2[j]);
      a3 += q[j] * AsF32(r3[j]);
    }
    out[p] = a0;
    out[p + 1] = a1;
    out[p + 2] = a2;
    out[p + 3] = a3;
  }
  for (; p < n; ++p) {
    const Row* r = rows + p * stride;
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < hd; ++j) acc += q[j] * AsF32(r[j]);
    out[p] = acc;
  }
}

ZAYA_CLONES void DotRowsF32Impl(const float* q, const float* rows, int64_t stride, int64_t n,
                                int64_t hd, float* out) {
  DotRowsBody(q, rows, stride, n, hd, out);
}

ZAYA_CLONES void DotRowsBf16Impl(const float* q, const uint16_t* rows, int64_t stride, int64_t n,
                                 int64_t hd, float* out) {
  DotRowsBody(q, rows, stride, n, hd, out);
}

ZAYA_CLONES void DotRowsI8Impl(const float* q, const int8_t* rows, int64_t stride, int64_t n,
                               int64_t hd, float* out) {
  DotRowsBody(q, rows, stride, n, hd, out);
}

// Four rows per pass over acc: one load and store of acc per four FMAs, not per one.
template <class Row>
__attribute__((always_inline)) inline void AxpyRowsBody(const float* w, const Row* rows,
                                                        int64_t stride, int64_t n, int64_t hd,
                                                        float* acc) {
  int64_t p = 0;
  for (; p + 4 <= n; p += 4) {
    const Row* r0 = rows + p * stride;
    const Row* r1 = r0 + stride;
    const Row* r2 = r1 + stride;
    const Row* r3 = r2 + stride;
    const float a0 = w[p], a1 = w[p + 1], a2 = w[p + 2], a3 = w[p + 3];
#pragma omp simd
    for (int64_t j = 0; j < hd; ++j) {
      acc[j] += a0 * AsF32(r0[j]) + a1 * AsF32(r1[j]) + a2 * AsF32(r2[j]) + a3 * AsF32(r3[j]);
    }
  }
  for (; p < n; ++p) {
    const Row* r = rows + p * stride;
    const float a = w[p];
#pragma omp simd
    for (int64_t j = 0; j < hd; ++j) acc[j] += a * AsF32(r[j]);
  }
}

ZAYA_CLONES void AxpyRowsF32Impl(const float* w, const float* rows, int64_t stride, int64_t n,
                                 int64_t hd, float* acc) {
  AxpyRowsBody(w, rows, stride, n, hd, acc);
}

ZAYA_CLONES void AxpyRowsBf16Impl(const float* w, const uint16_t* rows, int64_t stride, int64_t n,
                                  int64_t hd, float* acc) {
  AxpyRowsBody(w, rows, stride, n, hd, acc);
}

ZAYA_CLONES void AxpyRowsI8Impl(const float* w, const int8_t* rows, int64_t stride, int64_t n,
                                int64_t hd, float* acc) {
  AxpyRowsBody(w, rows, stride, n, hd, acc);
}

// exp for x <= 0 in plain arithmetic that vectorizes (glibc's vector expf needs -ffast-math for the
// whole file): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact n ln2), exp(r) by its
// degree-7 Taylor polynomial (truncation < 1e-8 relative), 2^n through the exponent bits. Inputs
// below -87 give ~1e-38 instead of underflowing to 0, which a softmax sum does not notice.
// n is rounded by adding and subtracting 1.5 x 2^23 (exact for |x log2 e| < 2^22): GCC 12 does
// not vectorize std::floor, and until session 12 that left this function, and the softmax and
// SwiGLU loops around it, scalar (-fopt-info-vec: "no vectype" for the loop's loads).
__attribute__((always_inline)) inline float ExpNonPositive(float x) {
  x = std::max(x, -87.0f);
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.f / 5040;
  p = p * r + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  return p * __builtin_bit_cast(float, e << 23);
}

// silu(g) u through ExpNonPositive: e = exp(-|g|) never overflows, and silu(g) = g / (1 + e) for
// g >= 0, g e / (1 + e) below (the same function, each form where exp stays <= 1). Past |g| = 87
// e is 0: ExpNonPositive would stop at ~1e-38, and g e for g = -3e38 would be -5, not ~0.
ZAYA_CLONES void SiluMulImpl(const float* g, const float* u, int64_t n, float* out) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float x = g[i], ax = std::fabs(x), e = ax > 87.f ? 0.f : ExpNonPositive(-ax);
    out[i] = (x >= 0.f ? x : x * e) / (1.f + e) * u[i];
  }
}

// GELU (erf form) and SiLU in place, through ExpNonPositive. gelu(v) = v (1 + erf(v / sqrt 2)) / 2,
// with erfc(z), z = |v| / sqrt 2 >= 0, from Numerical Recipes' erfcc (Chebyshev fit, < 1.2e-7
// relative everywhere): erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2); then 1 + erf(v / sqrt 2)
// is 2 - erfc(z) for v >= 0 and erfc(z) below, so the result keeps its relative accuracy where it
// is tiny (v << 0). std::erf per element cost the 8B shape's router MLP ~45 us per 16-token
// matmul, ~4 ms of a batch-16 step (docs/performance.md, session 14).
ZAYA_CLONES void ApplyActImpl(Act act, float* v, int64_t n) {
  if (act == Act::kSilu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float x = v[i], ax = std::fabs(x), e = ax > 87.f ? 0.f : ExpNonPositive(-ax);
      v[i] = (x >= 0.f ? x : x * e) / (1.f + e);
    }
  } else if (act == Act::kGelu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float x = v[i], z = std::fabs(x) * 0.70710678118654752f;
      const float t = 1.f / (1.f + 0.5f * z);
      float p = 0.17087277f;
      p = p * t - 0.82215223f;
      p = p * t + 1.48851587f;
      p = p * t - 1.13520398f;
      p = p * t + 0.27886807f;
      p = p * t - 0.18628806f;
      p = p * t + 0.09678418f;
      p = p * t + 0.37409196f;
      p = p * t + 1.00002368f;
      p = p * t - 1.26551223f;
      // At z = 0 the exponent is +3e-8, which ExpNonPositive takes as well (n = 0).
      const float c = t * ExpNonPositive(p - z * z);
      v[i] = 0.5f * x * (x >= 0.f ? 2.f - c : c);
    }
  }
}

ZAYA_CLONES float ExpShiftedImpl(float* s, int64_t n, float shift) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    s[i] = ExpNonPositive(s[i] - shift);
    sum += s[i];
  }
  return sum;
}

}  // namespace

// target_clones resolvers of external functions get default visibility whatever the preset (they
// would show in the plugin's dynamic symbol table), so the clones stay internal behind these.
void DotRows(const float* q, const float* rows, int64_t stride, int64_t n, int64_t hd, float* out) {
  DotRowsF32Impl(q, rows, stride, n, hd, out);
}
void DotRows(const float* q, const uint16_t* rows, int64_t stride, int64_t n, int64_t hd,
             float* out) {
  DotRowsBf16Impl(q, rows, stride, n, hd, out);
}
void DotRows(const float* q, const int8_t* rows, int64_t stride, int64_t n, int64_t hd,
             float* out) {
  DotRowsI8Impl(q, rows, stride, n, hd, out);
}
float ExpShifted(float* s, int64_t n, float shift) { return ExpShiftedImpl(s, n, shift); }

void QuantizeKvRow(const float* x, int64_t n, int8_t* q, float* scale) {
  float amax = 0.f;
  bool finite = true;
  for (int64_t j = 0; j < n; ++j) {
    finite = finite && std::isfinite(x[j]);
    amax = std::max(amax, std::fabs(x[j]));
  }
  if (!finite || amax == 0.f) {
    *scale = finite ? 0.f : std::numeric_limits<float>::quiet_NaN();
    std::fill(q, q + n, int8_t{0});
    return;
  }
  const float inv = 127.f / amax;
  for (int64_t j = 0; j < n; ++j) {
    q[j] = static_cast<int8_t>(std::clamp(std::nearbyint(x[j] * inv), -127.f, 127.f));
  }
  *scale = amax / 127.f;
}
void SiluMul(const float* g, const float* u, int64_t n, float* out) { SiluMulImpl(g, u, n, out); }
void ApplyActInPlace(Act act, float* v, int64_t n) {
  if (act != Act::kNone) ApplyActImpl(act, v, n);
}

void AxpyRows(const float* w, const float* rows, int64_t stride, int64_t n, int64_t hd, float* acc) {
  AxpyRowsF32Impl(w, rows, stride, n, hd, acc);
}
void AxpyRows(const float* w, const uint16_t* rows, int64_t stride, int64_t n, int64_t hd,
              float* acc) {
  AxpyRowsBf16Impl(w, rows, stride, n, hd, acc);
}
void AxpyRows(const float* w, const int8_t* rows, int64_t stride, int64_t n, int64_t hd,
              float* acc) {
  AxpyRowsI8Impl(w, rows, stride, n, hd, acc);
}

void RowToF32(const Weights& w, int64_t n, int64_t k, float* out) {
  switch (w.type) {
    case WType::kF32: {
      const float* src = static_cast<const float*>(w.data) + n * k;
      std::copy(src, src + k, out);
      return;
    }
    case WType::kBF16: {
      if (w.bf16_tiles) {
        const int64_t r = n % kBf16TileRows;
        const uint16_t* block = static_cast<const uint16_t*>(w.data) + (n - r) * k;
        for (int64_t i = 0; i < k; ++i)
          out[i] = Bf16ToF32(block[(i & ~int64_t{1}) * 16 + 2 * r + (i & 1)]);
        return;
      }
      const uint16_t* src = static_cast<const uint16_t*>(w.data) + n * k;
      for (int64_t i = 0; i < k; ++i) out[i] = Bf16ToF32(src[i]);
      return;
    }
    case WType::kI8: {
      if (w.i8_blocks) {
        const int64_t r = n % kI8TileRows;
        const auto* block = static_cast<const uint8_t*>(w.data) + n / kI8TileRows * I8BlockBytes(k);
        for (int64_t i = 0; i < k; ++i) {
          const uint8_t* q = block + i / kI8Group * kI8GroupBytes;
          const auto v = static_cast<int8_t>(q[(i % kI8Group >> 2) * 64 + 4 * r + (i & 3)] ^ 0x80);
          float scale;
          std::memcpy(&scale, q + kI8TileRows * kI8Group + 4 * r, 4);
          out[i] = static_cast<float>(v) * scale;
        }
        return;
      }
      const int8_t* src = static_cast<const int8_t*>(w.data) + n * k;
      const float* sc = w.scales + n * zaya_i8_scales(k);
      int64_t from = 0;
      if (w.i8_tiles) {
        from = k & ~int64_t{255};
        for (int64_t g = 0; g < from; g += 256) {
          for (int64_t c = 0; c < 4; ++c) {
            for (int64_t l = 0; l < 8; ++l) {
              for (int64_t b = 0; b < 8; ++b) {
                out[g + 32 * l + 8 * c + b] =
                    static_cast<float>(src[g + 64 * c + 8 * l + b]) * sc[(g + 32 * l) / kI8Group];
              }
            }
          }
        }
      }
      for (int64_t i = from; i < k; ++i) out[i] = static_cast<float>(src[i]) * sc[i / kI8Group];
      return;
    }
  }
}

bool I8TilesLayoutUsed() { return MatVecIsa() >= Isa::kAvx512; }
bool Bf16TilesLayoutUsed() { return MatVecIsa() >= Isa::kAvx512; }
bool Bf16TilesFit(int64_t rows_each, int64_t k) {
  return Bf16TilesLayoutUsed() && k % 2 == 0 && k >= 32 && rows_each % kBf16TileRows == 0;
}

void PackBf16Tiles(uint16_t* w, int64_t n, int64_t k) {
  std::vector<uint16_t> rows(static_cast<size_t>(kBf16TileRows * k));
  for (int64_t b = 0; b < n; b += kBf16TileRows) {
    uint16_t* block = w + b * k;
    std::copy(block, block + kBf16TileRows * k, rows.begin());
    for (int64_t r = 0; r < kBf16TileRows; ++r) {
      for (int64_t j = 0; j < k; ++j)
        block[(j & ~int64_t{1}) * 16 + 2 * r + (j & 1)] = rows[r * k + j];
    }
  }
}

bool I8BlocksFit(int64_t rows_each, int64_t k) {
  return MatVecIsa() >= Isa::kAvx512 && k > 0 && k % kI8Group == 0 && rows_each % kI8TileRows == 0;
}

void PackI8Blocks(const int8_t* w, const float* scales, int64_t n, int64_t k, uint8_t* dst) {
  // In the order of the bytes written (each 64-byte line whole: 4 columns of the 16 rows): a byte
  // at a time in the order read took a fifth of an int8 load of the 8B shape (perf, session 24).
  const int64_t nb = k / kI8Group;
  for (int64_t b = 0; b < n; b += kI8TileRows) {
    uint8_t* block = dst + b / kI8TileRows * I8BlockBytes(k);
    const int8_t* rows = w + b * k;
    for (int64_t q = 0; q < nb; ++q) {
      uint8_t* group = block + q * kI8GroupBytes;
      for (int64_t c = 0; c < kI8Group / 4; ++c) {
        for (int64_t r = 0; r < kI8TileRows; ++r) {
          uint32_t quad;
          std::memcpy(&quad, rows + r * k + q * kI8Group + 4 * c, 4);
          quad ^= 0x80808080u;  // signed to offset bytes: the tiles multiply unsigned weights
          std::memcpy(group + c * 64 + 4 * r, &quad, 4);
        }
      }
      for (int64_t r = 0; r < kI8TileRows; ++r) {
        std::memcpy(group + kI8TileRows * kI8Group + 4 * r, scales + (b + r) * nb + q, 4);
      }
    }
  }
}

void PackI8Tiles(int8_t* w, int64_t n, int64_t k) {
  const int64_t k256 = k & ~int64_t{255};
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < k256; g += 256) {
      int8_t* group = w + r * k + g;
      uint64_t in[32], out[32];  // qwords: in[4L + c] = bytes 8c .. 8c + 7 of block L
      std::memcpy(in, group, sizeof(in));
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 8; ++l) out[8 * c + l] = in[4 * l + c];
      std::memcpy(group, out, sizeof(out));
    }
  }
}

namespace {

// Small-batch matmul tiles. GCC vector extensions (8 x f32 = one AVX2 register) compiled once per
// target of ZAYA_CLONES: each clone inlines the tiles with its own instruction set (AVX-512VL,
// AVX2+FMA, or two SSE halves for baseline x86-64). This file is built with -ffp-contract=fast so
// `acc += w * x` becomes an FMA.
typedef float V8 __attribute__((vector_size(32)));
typedef uint16_t U16x8 __attribute__((vector_size(16)));
typedef uint32_t U32x8 __attribute__((vector_size(32)));
typedef int32_t I32x8 __attribute__((vector_size(32)));
typedef int8_t I8x16 __attribute__((vector_size(16)));
typedef uint64_t U64x2 __attribute__((vector_size(16)));
typedef int8_t I8x32 __attribute__((vector_size(32)));

#define ZAYA_INLINE __attribute__((always_inline)) inline

ZAYA_INLINE V8 LoadF32(const float* p) {
  V8 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// Horizontal sum in a fixed order (the same for every tile shape).
ZAYA_INLINE float HSum(V8 a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// Weight access per dtype: Load(r, j) is W[r, j..j+8) as f32 (j a multiple of 8), Scalar(r, j) one
// value. int8 chunks of 8 never straddle a scale group.
struct F32Rows {
  const float* w;
  int64_t k;
  ZAYA_INLINE V8 Load(int64_t r, int64_t j) const { return LoadF32(w + r * k + j); }
  ZAYA_INLINE float Scalar(int64_t r, int64_t j) const { return w[r * k + j]; }
};
struct Bf16Rows {
  const uint16_t* w;
  int64_t k;
  ZAYA_INLINE V8 Load(int64_t r, int64_t j) const {
    U16x8 h;
    __builtin_memcpy(&h, w + r * k + j, sizeof(h));
    const U32x8 bits = __builtin_convertvector(h, U32x8) << 16;
    return (V8)bits;  // a GCC vector cast between same-size vectors reinterprets the bits
  }
  ZAYA_INLINE float Scalar(int64_t r, int64_t j) const { return Bf16ToF32(w[r * k + j]); }
};
struct I8Rows {
  const int8_t* w;
  const float* scales;
  int64_t k, nb;
  ZAYA_INLINE V8 Load(int64_t r, int64_t j) const {
    // Sign-extend by placing each byte at the top of an i32 lane and shifting it back down:
    // GCC 12 scalarizes __builtin_convertvector from i8, this becomes a byte shuffle + vpsrad.
    uint64_t bits;
    __builtin_memcpy(&bits, w + r * k + j, sizeof(bits));
    const I8x16 b16 = (I8x16)U64x2{bits, 0};  // one vmovq, no store-forwarding stall
    const I8x32 spread = __builtin_shufflevector(b16, b16, 16, 16, 16, 0, 16, 16, 16, 1, 16, 16, 16, 2,
                                                 16, 16, 16, 3, 16, 16, 16, 4, 16, 16, 16, 5, 16,
                                                 16, 16, 6, 16, 16, 16, 7);
    const I32x8 wide = (I32x8)spread >> 24;
    return __builtin_convertvector(wide, V8) * scales[r * nb + j / kI8Group];
  }
  ZAYA_INLINE float Scalar(int64_t r, int64_t j) const {
    return static_cast<float>(w[r * k + j]) * scales[r * nb + j / kI8Group];
  }
};

// out[r][i] = W[row0 + r] . x[i] for R rows and T tokens. Each (row, token) sum runs in the same
// order whatever R and T are: one 8-lane accumulator over the multiples of 8, HSum, then the tail in
// order. That is what makes a row's output independent of the batch it came in.
template <int R, int T, class Rows>
ZAYA_INLINE void Tile(const Rows& w, int64_t row0, int64_t k, const float* x, float out[R][T]) {
  V8 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = V8{};
  const int64_t k8 = k & ~int64_t{7};
  for (int64_t j = 0; j < k8; j += 8) {
    V8 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = w.Load(row0 + r, j);
    for (int i = 0; i < T; ++i) {
      const V8 xv = LoadF32(x + i * k + j);
      for (int r = 0; r < R; ++r) acc[r][i] += wv[r] * xv;
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < T; ++i) {
      float s = HSum(acc[r][i]);
      for (int64_t j = k8; j < k; ++j) s += x[i * k + j] * w.Scalar(row0 + r, j);
      out[r][i] = s;
    }
  }
}

template <int R, int T, class Rows>
ZAYA_INLINE void TileStore(const Rows& w, int64_t row0, int64_t k, const float* x, int64_t i0,
                           int64_t n, const float* bias, float* y) {
  float out[R][T];
  Tile<R, T>(w, row0, k, x + i0 * k, out);
  for (int r = 0; r < R; ++r) {
    const float b = bias != nullptr ? bias[row0 + r] : 0.f;
    for (int i = 0; i < T; ++i) y[(i0 + i) * n + row0 + r] = out[r][i] + b;
  }
}

// Rows [r0, r1) for all t tokens: tiles of 4 rows x 3 tokens; the weights of a 4-row tile stay in
// L1 while every token passes over them, so each weight byte comes from memory once per call.
template <int R, class Rows>
ZAYA_INLINE void RowBlock(const Rows& w, int64_t r, int64_t k, const float* x, int64_t t, int64_t n,
                          const float* bias, float* y) {
  int64_t i = 0;
  for (; i + 3 <= t; i += 3) TileStore<R, 3>(w, r, k, x, i, n, bias, y);
  if (t - i == 2) TileStore<R, 2>(w, r, k, x, i, n, bias, y);
  if (t - i == 1) TileStore<R, 1>(w, r, k, x, i, n, bias, y);
}

template <class Rows>
ZAYA_INLINE void MatVecRowsImpl(const Rows& w, int64_t r0, int64_t r1, int64_t k, const float* x,
                                int64_t t, int64_t n, const float* bias, float* y) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    RowBlock<4>(w, r, k, x, t, n, bias, y);
  }
  for (; r < r1; ++r) RowBlock<1>(w, r, k, x, t, n, bias, y);
}

ZAYA_CLONES void MatVecF32(const F32Rows& w, int64_t r0, int64_t r1, int64_t k, const float* x,
                           int64_t t, int64_t n, const float* bias, float* y) {
  MatVecRowsImpl(w, r0, r1, k, x, t, n, bias, y);
}
ZAYA_CLONES void MatVecBf16(const Bf16Rows& w, int64_t r0, int64_t r1, int64_t k, const float* x,
                            int64_t t, int64_t n, const float* bias, float* y) {
  MatVecRowsImpl(w, r0, r1, k, x, t, n, bias, y);
}
ZAYA_CLONES void MatVecI8(const I8Rows& w, int64_t r0, int64_t r1, int64_t k, const float* x,
                          int64_t t, int64_t n, const float* bias, float* y) {
  MatVecRowsImpl(w, r0, r1, k, x, t, n, bias, y);
}

struct IsaChoice {
  Isa isa = Isa::kPortable;
  std::string env_error;
  std::string amx_note;  // why a CPU with the AVX-512 tiles runs no AMX, where it was asked for
};

IsaChoice ChooseIsa() {
  __builtin_cpu_init();
  IsaChoice c;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) c.isa = Isa::kAvx2;
  if (c.isa == Isa::kAvx2 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16") &&
      __builtin_cpu_supports("avx512vnni")) {
    c.isa = Isa::kAvx512;
  }
  const char* env = std::getenv("ZAYA_CPU_ISA");
  Isa cap = Isa::kAmx;  // none: the best there is
  if (env != nullptr && *env != '\0') {
    if (std::strcmp(env, "portable") == 0) {
      cap = Isa::kPortable;
    } else if (std::strcmp(env, "avx2") == 0) {
      cap = Isa::kAvx2;
    } else if (std::strcmp(env, "avx512") == 0) {
      cap = Isa::kAvx512;
    } else if (std::strcmp(env, "amx") != 0) {
      c.env_error = std::string("ZAYA_CPU_ISA=") + env +
                    " is not one of portable, avx2, avx512, amx; ignoring it";
    }
  }
  // The tile data is asked for only where AMX may run: a process granted it carries the tiles'
  // 8 KiB in every signal frame and context switch.
  if (c.isa == Isa::kAvx512 && cap == Isa::kAmx) {
    c.amx_note = amx::TileDataUnavailable();
    if (c.amx_note.empty()) c.isa = Isa::kAmx;
  }
  c.isa = std::min(c.isa, cap);
  if (!c.env_error.empty()) c.env_error += std::string(" and using ") + IsaName(c.isa);
  return c;
}

const IsaChoice& Choice() {
  static const IsaChoice c = ChooseIsa();
  return c;
}

// x in the forms the chosen tiles multiply, made once per matmul call (not once per thread).
struct PreparedX {
  const float* x = nullptr;
  const int16_t* xq = nullptr;  // int8 weights, AVX2 tiles: [T, K & ~15], scales [T]
  const uint8_t* xq8 = nullptr;  // int8 weights, AVX-512 tiles: [T, K & ~31], see QuantizeX8
  const float* xs = nullptr;
  const uint16_t* xb = nullptr;  // bf16 weights, AVX-512 tiles: [T, K & ~31]
  const uint32_t* xt = nullptr;  // bf16 weights in the tile layout: T K / 2 by token pass (PairX)
  const uint16_t* xa = nullptr;  // the same on AMX: T K by 32-column chunk (amx::ChunkX)
  // int8 weights in the block layout: T K / 4, then T K / 128 twice, by token pass
  // (QuantizeXQuads)
  const uint32_t* x4 = nullptr;
  const float* x4s = nullptr;
  const int32_t* x4c = nullptr;
  // The same on AMX, from kAmxI8MinTokens tokens: T K by 64-column chunk (QuantizeXChunks), the
  // scales and offsets [K / 128][T] in x4s and x4c.
  const int8_t* x8a = nullptr;
};

// From this many tokens int8 weights in the block layout go through AMX (amx::MatVecI8Blocks,
// bitwise the AVX-512 tile's outputs) where MatVecIsa() is kAmx. Session 22 on the Xeon
// (cpu_kernel_bench --dtype int8 --rows 4096 --k 2048 --mib 1024, GB/s, AMX against AVX-512):
// 2-8 tokens 27.0-29.0 against 28.2-30.8, where the VNNI tiles stream and AMX's fixed 16-row
// tiles cost more than they save; 9-10 tokens 25.8-26.8 against 23.2-24.3 and 16 tokens 23.5
// against 19.4, where the VNNI tile (one block x 16) is bound by arithmetic.
constexpr int64_t kAmxI8MinTokens = 9;

// From this many tokens XScratch::Prepare splits the block layouts' x forms between the pool's
// threads: one thread took ~15 ns per token and 32 columns, 0.5 ms for a 512-token chunk at K =
// 2048 while the other thread waited (docs/performance.md, session 13). From 32 until session 14,
// which found a batch-16 step's dense matmuls waiting on it: 16 tokens (two passes of 8) split
// in two, int8 1536 x 2048 +3-7%, 2048 x 1024 +9-12%, 256 x 2048 +12-16%, bf16 1536 x 2048 +3-5%.
constexpr int64_t kParallelPrepareTokens = 16;

// Which of those forms a set of matmuls on one x needs.
struct XForms {
  bool bf16 = false, bf16_tiles = false, i8 = false, i8_blocks = false;
  void Add(const Weights& w) {
    bf16 |= w.type == WType::kBF16 && !w.bf16_tiles;
    bf16_tiles |= w.bf16_tiles;
    i8 |= w.type == WType::kI8 && !w.i8_blocks;
    i8_blocks |= w.i8_blocks;
  }
};

// Scratch of one caller; the prepared pointers stay valid until its next Prepare.
struct XScratch {
  AlignedVector<int16_t> xq;
  AlignedVector<uint8_t> xq8;
  AlignedVector<float> xs;  // 64-byte aligned: the AVX-512 int8 tiles load 16 scales at a time
  AlignedVector<uint16_t> xb;
  AlignedVector<uint32_t> xt;
  AlignedVector<uint16_t> xa;
  AlignedVector<uint32_t> x4;
  AlignedVector<float> x4s;
  AlignedVector<int32_t> x4c;
  AlignedVector<int8_t> x8a;

  // pool: where x is prepared for many tokens at once (a prompt chunk), the pool's threads split
  // the block layouts' forms by token; null where the caller is a pool thread already.
  PreparedX Prepare(const float* x, int64_t t, int64_t k, const XForms& need,
                    ThreadPool* pool = nullptr) {
    // fn(i0, i1) over tokens, split at the tiles' token passes of tt tokens (whose x share cache
    // lines: split inside one, two threads would write the same lines).
    const auto by_token = [&](int64_t tt, const auto& fn) {
      if (pool != nullptr && t >= kParallelPrepareTokens) {
        pool->ParallelFor((t + tt - 1) / tt, std::max<int64_t>(1, kParallelPrepareTokens / 2 / tt),
                          [&](int64_t p0, int64_t p1, int) { fn(p0 * tt, std::min(t, p1 * tt)); });
      } else {
        fn(0, t);
      }
    };
    PreparedX p;
    p.x = x;
    const Isa isa = MatVecIsa();
    if (need.i8 && isa >= Isa::kAvx2) {
      if (isa >= Isa::kAvx512) {
        xq8.resize(static_cast<size_t>(t * (k & ~int64_t{31})));
        xs.resize(static_cast<size_t>(t * avx512::X8ScaleStride(k)));
        avx512::QuantizeX8(x, t, k, xq8.data(), xs.data());
        p.xq8 = xq8.data();
      } else {
        xq.resize(static_cast<size_t>(t * (k & ~int64_t{15})));
        xs.resize(static_cast<size_t>(t));
        avx2::QuantizeX(x, t, k, xq.data(), xs.data());
        p.xq = xq.data();
      }
      p.xs = xs.data();
    }
    if (need.i8_blocks) {  // only packed where the AVX-512 tiles run, and K % 128 == 0
      x4s.resize(static_cast<size_t>(t * (k / kI8Group)));
      x4c.resize(static_cast<size_t>(t * (k / kI8Group)));
      p.x4s = x4s.data();
      p.x4c = x4c.data();
    }
    if (need.i8_blocks && isa == Isa::kAmx && t >= kAmxI8MinTokens) {
      // 15 rows of 64 bytes past the end: a last tile of fewer than 16 tokens loads 16.
      x8a.resize(static_cast<size_t>(t * k + 15 * 64));
      // By 16 tokens: a 16-token range's scales and offsets fill whole lines where T % 16 == 0.
      by_token(16, [&](int64_t i0, int64_t i1) {
        avx512::QuantizeXChunks(x, t, k, x8a.data(), x4s.data(), x4c.data(), i0, i1);
      });
      p.x8a = x8a.data();
    } else if (need.i8_blocks) {
      x4.resize(static_cast<size_t>(t * (k / 4)));
      by_token(avx512::I8BlockPassTokens(t), [&](int64_t i0, int64_t i1) {
        avx512::QuantizeXQuads(x, t, k, x4.data(), x4s.data(), x4c.data(), i0, i1);
      });
      p.x4 = x4.data();
    }
    if (need.bf16 && isa >= Isa::kAvx512) {
      xb.resize(static_cast<size_t>(t * (k & ~int64_t{31})));
      avx512::RoundX(x, t, k, xb.data());
      p.xb = xb.data();
    }
    if (need.bf16_tiles && isa == Isa::kAmx) {
      xa.resize(static_cast<size_t>(t * k));
      // By 32 tokens, so that no two threads write one cache line of the K % 32 columns' part.
      by_token(32, [&](int64_t i0, int64_t i1) { amx::ChunkX(x, t, k, xa.data(), i0, i1); });
      p.xa = xa.data();
    } else if (need.bf16_tiles) {  // only packed where the AVX-512 tiles run, and K even
      xt.resize(static_cast<size_t>(t * (k / 2)));
      by_token(avx512::Bf16BlockPassTokens(t),
               [&](int64_t i0, int64_t i1) { avx512::PairX(x, t, k, xt.data(), i0, i1); });
      p.xt = xt.data();
    }
    return p;
  }
};

void MatVecRowsTiles(const Weights& w, int64_t r0, int64_t r1, int64_t k, const PreparedX& px,
                     int64_t t, int64_t n, const float* bias, float* y);

// The tiles write x W^T + bias; the activation follows over each token's rows [r0, r1) while they
// are in L1, in SIMD (ApplyActInPlace), not per element in the tiles' stores.
void MatVecRowsPrepared(const Weights& w, int64_t r0, int64_t r1, int64_t k, const PreparedX& px,
                        int64_t t, int64_t n, const float* bias, Act act, float* y) {
  MatVecRowsTiles(w, r0, r1, k, px, t, n, bias, y);
  if (act == Act::kNone) return;
  for (int64_t i = 0; i < t; ++i) ApplyActInPlace(act, y + i * n + r0, r1 - r0);
}

void MatVecRowsTiles(const Weights& w, int64_t r0, int64_t r1, int64_t k, const PreparedX& px,
                     int64_t t, int64_t n, const float* bias, float* y) {
  const float* x = px.x;
  const Isa isa = MatVecIsa();
  if (w.i8_blocks && px.x8a != nullptr) {
    return amx::MatVecI8Blocks(static_cast<const uint8_t*>(w.data), r0, r1, k, px.x8a, px.x4s,
                               px.x4c, t, n, bias, y);
  }
  if (w.i8_blocks) {
    return avx512::MatVecI8Blocks(static_cast<const uint8_t*>(w.data), r0, r1, k, px.x4, px.x4s,
                                  px.x4c, t, n, bias, y);
  }
  if (w.bf16_tiles && isa == Isa::kAmx) {
    return amx::MatVecBf16Tiles(static_cast<const uint16_t*>(w.data), r0, r1, k, px.xa, t, n, bias,
                                y);
  }
  if (w.bf16_tiles) {
    return avx512::MatVecBf16Tiles(static_cast<const uint16_t*>(w.data), r0, r1, k, px.xt, t, n,
                                   bias, y);
  }
  if (w.type == WType::kBF16 && isa >= Isa::kAvx512) {
    return avx512::MatVecBf16(static_cast<const uint16_t*>(w.data), r0, r1, k, x, px.xb, t, n, bias,
                              y);
  }
  if (w.type == WType::kBF16 && isa >= Isa::kAvx2) {
    return avx2::MatVecBf16(static_cast<const uint16_t*>(w.data), r0, r1, k, x, t, n, bias, y);
  }
  if (w.type == WType::kI8 && isa >= Isa::kAvx512) {
    return avx512::MatVecI8(static_cast<const int8_t*>(w.data), w.i8_tiles, w.scales, r0, r1, k, x,
                            px.xq8, px.xs, t, n, bias, y);
  }
  if (w.type == WType::kI8 && isa >= Isa::kAvx2) {
    return avx2::MatVecI8(static_cast<const int8_t*>(w.data), w.scales, r0, r1, k, x, px.xq, px.xs,
                          t, n, bias, y);
  }
  switch (w.type) {
    case WType::kF32:
      return MatVecF32(F32Rows{static_cast<const float*>(w.data), k}, r0, r1, k, x, t, n, bias, y);
    case WType::kBF16:
      return MatVecBf16(Bf16Rows{static_cast<const uint16_t*>(w.data), k}, r0, r1, k, x, t, n, bias,
                        y);
    case WType::kI8:
      return MatVecI8(I8Rows{static_cast<const int8_t*>(w.data), w.scales, k, zaya_i8_scales(k)},
                      r0, r1, k, x, t, n, bias, y);
  }
}

}  // namespace

Isa MatVecIsa() { return Choice().isa; }
bool TilesAtEveryBatch(const Weights& w) {
  return w.type != WType::kF32 && MatVecIsa() >= Isa::kAvx512;
}
const char* IsaEnvError() { return Choice().env_error.c_str(); }
const char* AmxNote() { return Choice().amx_note.c_str(); }
bool FarNtaFetch() {
  static const bool amd = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("amd") != 0;
  }();
  return amd;
}
const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kPortable: return "portable";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kAmx:
      return "amx";
  }
  return "?";
}

void MatVecRows(const Weights& w, int64_t r0, int64_t r1, int64_t k, const float* x, int64_t t,
                int64_t n, const float* bias, Act act, float* y) {
  thread_local XScratch scratch;  // callers run on several threads at once
  XForms need;
  need.Add(w);
  const PreparedX px = scratch.Prepare(x, t, k, need);
  MatVecRowsPrepared(w, r0, r1, k, px, t, n, bias, act, y);
}

void MatMul(ThreadPool& pool, const float* x, int64_t t, int64_t k, const Weights& w, int64_t n,
            const float* bias, Act act, float* y) {
  // Few tokens: stream each weight row once and dot it with every token (bandwidth-bound decode).
  // Many tokens: convert a panel of weight rows to f32 and let OpenBLAS run the panel's GEMM,
  // unless the tiles out-run it (TilesAtEveryBatch). Through the tiles every output is the same
  // per-row dot product whatever the batch, so a sequence decodes the same tokens alone or
  // batched with others (seeded runs are reproducible).
  if (t < kGemmMinTokens || k < 16 || TilesAtEveryBatch(w)) {
    const MatVecJob job{w, n, bias, act, y};
    MatVecShared(pool, x, t, k, &job, 1);
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
          if (bias != nullptr) {
            for (int64_t r = 0; r < rows; ++r) row[r] += bias[r0 + r];
          }
          ApplyActInPlace(act, row, rows);
        }
      }
    }
  });
}

void MatVecShared(ThreadPool& pool, const float* x, int64_t t, int64_t k, const MatVecJob* jobs,
                  int64_t count) {
  // x's forms for the tiles once, here, before the rows' region starts (the tiles only read them).
  XForms need;
  for (int64_t j = 0; j < count; ++j) need.Add(jobs[j].w);
  thread_local XScratch scratch;
  const PreparedX px = scratch.Prepare(x, t, k, need, &pool);
  // Units of 4 rows (16 for weights in the bf16 or int8 block layouts) numbered across the jobs,
  // in chunks of at least ~64 KiB of weights so that a thread's wakeup pays off; a chunk walks the
  // jobs its range covers. (The units only split the work: the row-major tiles then read a chunk's
  // rows as 4 slices, not as adjacent 4-row blocks.)
  auto unit = [](const MatVecJob& job) -> int64_t {
    return job.w.bf16_tiles ? kBf16TileRows : job.w.i8_blocks ? kI8TileRows : 4;
  };
  int64_t tiles = 0;
  for (int64_t j = 0; j < count; ++j) tiles += (jobs[j].n + unit(jobs[j]) - 1) / unit(jobs[j]);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(k, 1));
  pool.ParallelFor(tiles, grain, [&](int64_t begin, int64_t end, int) {
    int64_t first = 0;  // the first tile of job j
    for (int64_t j = 0; j < count && first < end; ++j) {
      const MatVecJob& job = jobs[j];
      const int64_t u = unit(job), job_tiles = (job.n + u - 1) / u;
      const int64_t b0 = std::max(begin, first), b1 = std::min(end, first + job_tiles);
      if (b0 < b1) {
        MatVecRowsPrepared(job.w, (b0 - first) * u, std::min(job.n, (b1 - first) * u), k, px, t,
                           job.n, job.bias, job.act, job.y);
      }
      first += job_tiles;
    }
  });
}

namespace {

// The small per-element ops of a step, in SIMD per ISA clone: the plugin's op code is built for
// baseline x86-64, where these loops ran as SSE2 or scalar (the sum of squares in double). On the
// 8B shape at 16 tokens an RMSNorm took ~13 us, now ~4 (docs/performance.md, session 14); a
// merge stayed at ~14 us, which its arithmetic is not (perf puts ~1 us of CPU in it). The sum of
// squares stays in double, its lanes summed in an order that depends only on n, so a row's
// result does not depend on the batch.
__attribute__((always_inline)) inline double SumOfSquares(const float* x, int64_t n) {
  double ss = 0.0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(x[j]) * x[j];
  return ss;
}

ZAYA_CLONES void RmsNormRow(const float* x, const float* w_f32, const uint16_t* w_bf16, int64_t n,
                            float eps, float* y) {
  const double ss = SumOfSquares(x, n);
  const float inv = 1.f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  if (w_f32 != nullptr) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] * inv * w_f32[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] * inv * AsF32(w_bf16[j]);
  }
}

ZAYA_CLONES void MergeRowsImpl(const float* x, const float* bh, const float* sh, const float* br,
                               const float* sr, int64_t t, int64_t n, float* h) {
  for (int64_t i = 0; i < t; ++i) {
    const float* xi = x + i * n;
    float* hi = h + i * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) hi[j] = (xi[j] + bh[j]) * sh[j] + (hi[j] + br[j]) * sr[j];
  }
}

ZAYA_CLONES void L2ScaleRopeImpl(float* x, int64_t n, float target, float eps, int64_t rope_dims,
                                 const float* cs, const float* sn) {
  const float norm = std::max(static_cast<float>(std::sqrt(SumOfSquares(x, n))), eps);
  const float f = target / norm;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= f;
  const int64_t half = rope_dims / 2;
#pragma omp simd
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cs[i] - b * sn[i];
    x[i + half] = b * cs[i] + a * sn[i];
  }
}

ZAYA_CLONES void MulAddRowsImpl(const float* a, const float* b, const float* s, int64_t t,
                                int64_t n, float* out) {
  for (int64_t i = 0; i < t; ++i) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) out[i * n + j] = a[i * n + j] + b[i * n + j] * s[j];
  }
}

}  // namespace

void RmsNorm(ThreadPool& pool, const float* x, const float* w_f32, const uint16_t* w_bf16,
             int64_t t, int64_t n, float eps, float* y) {
  pool.ParallelFor(t, 4, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) RmsNormRow(x + i * n, w_f32, w_bf16, n, eps, y + i * n);
  });
}

void MergeRows(ThreadPool& pool, const float* x, const float* bh, const float* sh, const float* br,
               const float* sr, int64_t t, int64_t n, float* h) {
  // On both threads: at batch 16 on the 8B shape the MoE has just streamed ~60 MB, so h comes
  // from DRAM, and one core's misses took ~12 us a call where two take ~9 (session 15).
  pool.ParallelFor(t, 4, [&](int64_t begin, int64_t end, int) {
    MergeRowsImpl(x + begin * n, bh, sh, br, sr, end - begin, n, h + begin * n);
  });
}

void MulAddRows(const float* a, const float* b, const float* s, int64_t t, int64_t n, float* out) {
  MulAddRowsImpl(a, b, s, t, n, out);
}

void L2ScaleRope(float* x, int64_t n, float target, float eps, int64_t rope_dims, const float* cs,
                 const float* sn) {
  L2ScaleRopeImpl(x, n, target, eps, rope_dims, cs, sn);
}

}  // namespace zaya::cpu
