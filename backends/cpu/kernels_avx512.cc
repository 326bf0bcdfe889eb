#include "kernels_avx512.h"

#include <immintrin.h>

#include "tile_driver.h"

// Built with the AVX-512 flags for this file only; nothing here runs unless MatVecIsa() said so.
namespace zaya::cpu::avx512 {
namespace {

#define ZAYA_INLINE __attribute__((always_inline)) inline

// Fixed-order horizontal sum (the same for every tile shape): halves, quarters, then pairs.
ZAYA_INLINE float HSum(__m512 a) {
  // Halves by vector-extension shuffles: GCC 12 warns (wrongly) that the extract and cast
  // intrinsics read an uninitialized source.
  const __m256 h = _mm256_add_ps(__builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7),
                                 __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

ZAYA_INLINE float Bf16Scalar(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// R rows x T tokens; acc[r][i] += W[r, j..j+32) . xb[i, j..j+32) in 16 lanes, then HSum and the
// columns past K32 in f32, in order. Row r of the tile starts at w + r * rs.
template <int R, int T>
ZAYA_INLINE void TileBf16(const uint16_t* w, int64_t k, int64_t rs, const uint16_t* xb,
                          int64_t k32, const float* x, float out[R][T]) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < k32; j += 32) {  // 64 bytes of each row: one prefetch, one chunk
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) {
      Prefetch(w + r * rs + kStreamAheadBytes / 2 + j);
      wv[r] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(w + r * rs + j));
    }
    for (int i = 0; i < T; ++i) {
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xb + i * k32 + j));
      for (int r = 0; r < R; ++r) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv[r], xv);
    }
  }
  // The horizontal sums in a loop of their own, so that the accumulators stay in registers above.
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) out[r][i] = HSum(acc[r][i]);
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < T; ++i) {
      for (int64_t jt = k32; jt < k; ++jt) out[r][i] += x[i * k + jt] * Bf16Scalar(w[r * rs + jt]);
    }
  }
}

// Tile shapes (32 zmm registers). One token: 4 rows (bound by memory). More tokens: 4 rows x 6
// tokens, 24 accumulators + 4 weight vectors + x, so each weight load feeds 6 dot products and
// each x load 4.
struct Bf16 {
  const uint16_t* w;
  int64_t k, k32;
  const uint16_t* xb;
  const float* x;
  static constexpr int kRowsOne = 4, kRowsMany = 4, kTokens = 6;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T]) const {
    TileBf16<R, T>(w + row0 * k, k, m * k, xb + i0 * k32, k32, x + i0 * k, out);
  }
};

}  // namespace

void RoundX(const float* x, int64_t t, int64_t k, uint16_t* xb) {
  const int64_t k32 = k & ~int64_t{31};
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t j = 0; j < k32; j += 32) {
      const __m512bh b =
          _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i * k + j + 16), _mm512_loadu_ps(x + i * k + j));
      _mm512_storeu_si512(xb + i * k32 + j, reinterpret_cast<const __m512i&>(b));
    }
  }
}

void MatVecBf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const float* x,
                const uint16_t* xb, int64_t t, int64_t n, const float* bias, Act act, float* y) {
  TileRows(Bf16{w, k, k & ~int64_t{31}, xb, x}, r0, r1, t, n, bias, act, y);
}

}  // namespace zaya::cpu::avx512
