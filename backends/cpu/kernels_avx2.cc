#include "kernels_avx2.h"

#include <immintrin.h>

// Built with -mavx2 -mfma for this file only; nothing here runs unless Avx2FmaUsable() said so.
namespace zaya::cpu::avx2 {
namespace {

#define ZAYA_INLINE __attribute__((always_inline)) inline

// Fixed-order horizontal sum: the same for every tile shape, so a row's result does not depend on
// which tile computed it.
ZAYA_INLINE float HSum(__m256 a) {
  const __m128 lo = _mm256_castps256_ps128(a), hi = _mm256_extractf128_ps(a, 1);
  const __m128 s = _mm_add_ps(lo, hi);                       // (0+4) (1+5) (2+6) (3+7)
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));       // (0+4)+(2+6), (1+5)+(3+7)
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));  // first + second
}

ZAYA_INLINE __m256 LoadBf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

ZAYA_INLINE __m256 LoadI8(const int8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

ZAYA_INLINE float Bf16Scalar(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// The hardware prefetcher alone left int8 decode at 12-16 GB/s from DRAM against 25 GB/s for bf16:
// with twice the arithmetic per byte, the out-of-order window reaches fewer bytes ahead. Each tile
// therefore prefetches the rows of the tile kAheadTiles further on (a prefetch past the matrix's end
// is harmless: prefetches do not fault). Measured on Zen 3 with cpu_kernel_bench: 1 or 2 tiles
// ahead, into L1, 19-22 GB/s int8; further ahead or into L2 no better. bf16, already at the read
// bandwidth, neither gains nor loses from the same prefetches.
constexpr int kAheadTiles = 2;

ZAYA_INLINE void Prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

// bf16: R rows x T tokens; acc[r][i] += W[r, j..j+8) * x[i, j..j+8) over the multiples of 8, then
// HSum and the scalar tail in order.
template <int R, int T>
ZAYA_INLINE void TileBf16(const uint16_t* w, int64_t k, const float* x, float out[R][T]) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm256_setzero_ps();
  const int64_t k8 = k & ~int64_t{7};
  auto chunk = [&](int64_t j) __attribute__((always_inline)) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadBf16(w + r * k + j);
    for (int i = 0; i < T; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * k + j);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  };
  int64_t j = 0;
  for (; j + 32 <= k8; j += 32) {  // 64 bytes of each row: one prefetch, four chunks
    for (int r = 0; r < R; ++r) Prefetch(w + (r + kAheadTiles * R) * k + j);
    chunk(j);
    chunk(j + 8);
    chunk(j + 16);
    chunk(j + 24);
  }
  for (; j < k8; j += 8) chunk(j);
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < T; ++i) {
      float s = HSum(acc[r][i]);
      for (int64_t jt = k8; jt < k; ++jt) s += x[i * k + jt] * Bf16Scalar(w[r * k + jt]);
      out[r][i] = s;
    }
  }
}

// int8 with a scale per 32 values: per block, blk = sum of W[r, chunk] * x over the block's chunks of
// 8 (integers widened exactly to f32), then acc += blk * scale: one multiply by the scale per block
// instead of one per chunk. The scalar tail (k % 8) is added after HSum, each value times its scale.
template <int R, int T>
ZAYA_INLINE void TileI8(const int8_t* w, const float* scales, int64_t nb, int64_t k, const float* x,
                        float out[R][T]) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm256_setzero_ps();
  const int64_t k8 = k & ~int64_t{7};
  // One block of `chunks` chunks of 8 from column j0; full blocks pass a constant 4, which unrolls.
  auto block = [&](int64_t b, int64_t chunks) __attribute__((always_inline)) {
    const int64_t j0 = b * 32;
    if ((b & 1) == 0) {  // one prefetch per 64-byte line of each row
      for (int r = 0; r < R; ++r) Prefetch(w + (r + kAheadTiles * R) * k + j0);
    }
    __m256 blk[R][T];
    {
      __m256 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = LoadI8(w + r * k + j0);
      for (int i = 0; i < T; ++i) {
        const __m256 xv = _mm256_loadu_ps(x + i * k + j0);
        for (int r = 0; r < R; ++r) blk[r][i] = _mm256_mul_ps(wv[r], xv);
      }
    }
    for (int64_t c = 1; c < chunks; ++c) {
      const int64_t j = j0 + c * 8;
      __m256 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = LoadI8(w + r * k + j);
      for (int i = 0; i < T; ++i) {
        const __m256 xv = _mm256_loadu_ps(x + i * k + j);
        for (int r = 0; r < R; ++r) blk[r][i] = _mm256_fmadd_ps(wv[r], xv, blk[r][i]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m256 s = _mm256_broadcast_ss(scales + r * nb + b);
      for (int i = 0; i < T; ++i) acc[r][i] = _mm256_fmadd_ps(blk[r][i], s, acc[r][i]);
    }
  };
  const int64_t full = k8 / 32;
  for (int64_t b = 0; b < full; ++b) block(b, 4);
  if (k8 > full * 32) block(full, (k8 - full * 32) / 8);
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < T; ++i) {
      float s = HSum(acc[r][i]);
      for (int64_t j = k8; j < k; ++j) {
        s += x[i * k + j] * (static_cast<float>(w[r * k + j]) * scales[r * nb + (j >> 5)]);
      }
      out[r][i] = s;
    }
  }
}

ZAYA_INLINE void Store(int r, int i, int64_t row0, int64_t i0, int64_t n, float v, const float* bias,
                       Act act, float* y) {
  const float b = bias != nullptr ? bias[row0 + r] : 0.f;
  y[(i0 + i) * n + row0 + r] = ApplyAct(act, v + b);
}

template <int R, int T>
ZAYA_INLINE void StoreTile(const float out[R][T], int64_t row0, int64_t i0, int64_t n,
                           const float* bias, Act act, float* y) {
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) Store(r, i, row0, i0, n, out[r][i], bias, act, y);
}

// Tile shapes (16 ymm registers). One token: 4 rows (the decode case, bound by memory). More
// tokens: 3 rows x 4 tokens, 12 accumulators + 3 weight vectors + the x vector, so each load feeds
// 3 or 4 FMAs; 4 rows x 3 tokens needed 17 registers, read x as a memory operand of every FMA and
// ran at ~42 GMAC/s on two Zen 3 cores against ~53 for 3 x 4 (cpu_kernel_bench, in-cache, batch
// 16; the FMA peak there is ~95). int8 keeps a block sum per accumulator and spills at 3 x 4, but
// still measured best (37 GMAC/s against 31 for 2 x 3 and 27 for 3 x 3 or 4 x 4). The weights of
// a row block stay in L1 while the token tiles pass over them, so each weight byte comes from
// memory once per call.
struct Bf16 {
  const uint16_t* w;
  int64_t k;
  static constexpr int kRowsMany = 3, kTokens = 4;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, const float* x, float out[R][T]) const {
    TileBf16<R, T>(w + row0 * k, k, x, out);
  }
};
struct I8 {
  const int8_t* w;
  const float* scales;
  int64_t k, nb;
  static constexpr int kRowsMany = 3, kTokens = 4;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, const float* x, float out[R][T]) const {
    TileI8<R, T>(w + row0 * k, scales + row0 * nb, nb, k, x, out);
  }
};

template <int R, int T, class W>
ZAYA_INLINE void TileAt(const W& w, int64_t row0, int64_t k, const float* x, int64_t i0, int64_t n,
                        const float* bias, Act act, float* y) {
  float out[R][T];
  w.template Tile<R, T>(row0, x + i0 * k, out);
  StoreTile<R, T>(out, row0, i0, n, bias, act, y);
}

template <int R, int TT, class W>
ZAYA_INLINE void RowBlock(const W& w, int64_t row0, int64_t k, const float* x, int64_t t, int64_t n,
                          const float* bias, Act act, float* y) {
  int64_t i = 0;
  for (; i + TT <= t; i += TT) TileAt<R, TT>(w, row0, k, x, i, n, bias, act, y);
  const int64_t rest = t - i;
  if constexpr (TT > 5) if (rest == 5) TileAt<R, 5>(w, row0, k, x, i, n, bias, act, y);
  if constexpr (TT > 4) if (rest == 4) TileAt<R, 4>(w, row0, k, x, i, n, bias, act, y);
  if constexpr (TT > 3) if (rest == 3) TileAt<R, 3>(w, row0, k, x, i, n, bias, act, y);
  if (rest == 2) TileAt<R, 2>(w, row0, k, x, i, n, bias, act, y);
  if (rest == 1) TileAt<R, 1>(w, row0, k, x, i, n, bias, act, y);
}

template <class W>
ZAYA_INLINE void Rows(const W& w, int64_t r0, int64_t r1, int64_t k, const float* x, int64_t t,
                      int64_t n, const float* bias, Act act, float* y) {
  int64_t r = r0;
  if (t == 1) {
    for (; r + 4 <= r1; r += 4) TileAt<4, 1>(w, r, k, x, 0, n, bias, act, y);
  } else {
    constexpr int RM = W::kRowsMany;
    for (; r + RM <= r1; r += RM) RowBlock<RM, W::kTokens>(w, r, k, x, t, n, bias, act, y);
  }
  for (; r < r1; ++r) RowBlock<1, W::kTokens>(w, r, k, x, t, n, bias, act, y);
}

}  // namespace

void MatVecBf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const float* x, int64_t t,
                int64_t n, const float* bias, Act act, float* y) {
  Rows(Bf16{w, k}, r0, r1, k, x, t, n, bias, act, y);
}

void MatVecI8(const int8_t* w, const float* scales, int64_t r0, int64_t r1, int64_t k,
              const float* x, int64_t t, int64_t n, const float* bias, Act act, float* y) {
  Rows(I8{w, scales, k, (k + 31) / 32}, r0, r1, k, x, t, n, bias, act, y);
}

}  // namespace zaya::cpu::avx2
