#include "kernels_avx2.h"

#include <immintrin.h>

#include "tile_driver.h"

// Built with -mavx2 -mfma for this file only; nothing here runs unless Avx2FmaUsable() said so.
namespace zaya::cpu::avx2 {
namespace {

#define ZAYA_INLINE __attribute__((always_inline)) inline

// Fixed-order horizontal sum: the same for every tile shape, so a row's result does not depend on
// which tile computed it.
ZAYA_INLINE float HSum(__m256 a) {
  const __m128 lo = _mm256_castps256_ps128(a), hi = _mm256_extractf128_ps(a, 1);
  const __m128 s = _mm_add_ps(lo, hi);                      // (0+4) (1+5) (2+6) (3+7)
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));      // (0+4)+(2+6), (1+5)+(3+7)
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));  // first + second
}

ZAYA_INLINE __m256 LoadBf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

ZAYA_INLINE float HMax(__m256 a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// bf16: R rows x T tokens; acc[r][i] += W[r, j..j+8) * x[i, j..j+8) over the multiples of 8, then
// HSum and the scalar tail in order.
// Rows r of the tile start at w + r * rs.
template <int R, int T>
ZAYA_INLINE void TileBf16(const uint16_t* w, int64_t k, int64_t rs, const float* x, float out[R][T],
                          int64_t ahead) {  // ahead: bytes (PrefetchWeights)
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm256_setzero_ps();
  const int64_t k8 = k & ~int64_t{7};
  auto chunk = [&](int64_t j) __attribute__((always_inline)) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = LoadBf16(w + r * rs + j);
    for (int i = 0; i < T; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * k + j);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  };
  int64_t j = 0;
  for (; j + 32 <= k8; j += 32) {  // 64 bytes of each row: one prefetch, four chunks
    for (int r = 0; r < R; ++r) PrefetchWeights(w + r * rs + j, ahead);
    chunk(j);
    chunk(j + 8);
    chunk(j + 16);
    chunk(j + 24);
  }
  for (; j < k8; j += 8) chunk(j);
  // The horizontal sums in a loop of their own, so that the accumulators stay in registers above.
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) out[r][i] = HSum(acc[r][i]);
  AddTailBf16<R, T>(w, rs, x, k, k8, out);
}

// int8 weights against x rounded to int16 with one scale per token (QuantizeX): 16 products per
// vpmaddwd in exact integer arithmetic, one int->float conversion and one FMA with the weight
// group's scale per 32 columns (whose sums would outgrow f32's exact integers over a whole group),
// and x's scale once per (row, token) at the end. On Zen 3 vpmaddwd and FMA share the two FMA
// pipes, so what an int8 block costs there is what counts: 2 vpmaddwd + 1 FMA per 32 products and
// token, against 4 FMAs for bf16. A scale per 32 columns of x as well (up to session 4) needed a
// (weight scale x x scale) product per (row, token, block), one more multiply in those pipes, and
// spilled accumulators. On AVX2 (no VNNI) the per-weight widening and conversion of the
// float-activation tile made batch-1 int8 decode compute-bound at ~15 GMAC/s per core. The rounding
// of x adds a relative error of at most 2^-16 of the token's largest |x| per value; the int8
// weights' own is 2^-8 of the block's largest |w|. Per (row, token): acc += float(int block sum) *
// wscale over the blocks of the 16-aligned columns, HSum, times xscale, then the columns past the
// last multiple of 16 in float, in order.
struct QuantX {
  const int16_t* q;  // [T, K16]
  const float* s;    // [T] scale of each token's x
  const float* x;    // the original [T, K], for the tail
  int64_t k16;
};

// Row r of the tile starts at w + r * m * k, its scales at scales + r * m * nb.
template <int R, int T>
ZAYA_INLINE void TileI8(const int8_t* w, const float* scales, int64_t nb, int64_t k, int64_t m,
                        const QuantX& qx, int64_t i0, float out[R][T], int64_t ahead) {
  // ahead: rows (see PrefetchWeights)
  const int64_t rs = m * k, srs = m * nb;
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm256_setzero_ps();
  const int64_t k16 = qx.k16;
  const int16_t* xq = qx.q + i0 * k16;
  auto load_w = [&](int r, int64_t j) __attribute__((always_inline)) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * rs + j)));
  };
  auto load_x = [&](int i, int64_t j) __attribute__((always_inline)) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + i * k16 + j));
  };
  // One row at a time, x as memory operands: 2 weight vectors and the row's block scale live
  // instead of 2 x R, so the R x T accumulators stay in registers.
  auto block = [&](int64_t j) __attribute__((always_inline)) {
    for (int r = 0; r < R; ++r) {
      const __m256i w0 = load_w(r, j), w1 = load_w(r, j + 16);
      const __m256 ws = _mm256_broadcast_ss(scales + r * srs + j / kI8Group);
      for (int i = 0; i < T; ++i) {
        const __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(w0, load_x(i, j)),
                                              _mm256_madd_epi16(w1, load_x(i, j + 16)));
        acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), ws, acc[r][i]);
      }
    }
  };
  int64_t j = 0;
  for (; j + 64 <= k16; j += 64) {  // 64 bytes of each row: one prefetch, two blocks
    for (int r = 0; r < R; ++r) {
      PrefetchWeights(w + r * rs + j, ahead * k);
      PrefetchScales(scales + r * srs, j, 4 * ahead * nb);
    }
    block(j);
    block(j + 32);
  }
  if (j + 32 <= k16) {
    block(j);
    j += 32;
  }
  if (j < k16) {  // a last block of 16
    for (int r = 0; r < R; ++r) {
      const __m256i w0 = load_w(r, j);
      const __m256 ws = _mm256_broadcast_ss(scales + r * srs + j / kI8Group);
      for (int i = 0; i < T; ++i) {
        const __m256i isum = _mm256_madd_epi16(w0, load_x(i, j));
        acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), ws, acc[r][i]);
      }
    }
  }
  // The horizontal sums first, in a loop of their own: with the tail loop inside it GCC kept the
  // accumulators in memory and stored all of them on every pass of the main loop.
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) out[r][i] = HSum(acc[r][i]) * qx.s[i0 + i];
  AddTailI8<R, T>(w, scales, rs, srs, qx.x + i0 * k, k, k16, out);
}

// Tile shapes (16 ymm registers). One token: 4 rows (the decode case, bound by memory). More
// tokens: 3 rows x 4 tokens, 12 accumulators + 3 weight vectors + the x vector, so each load feeds
// 3 or 4 FMAs; 4 rows x 3 tokens needed 17 registers, read x as a memory operand of every FMA and
// ran at ~42 GMAC/s on two Zen 3 cores against ~53 for 3 x 4 (cpu_kernel_bench, in-cache, batch
// 16; the FMA peak there is ~95). int8: 2 rows x 4 tokens (8 accumulators + one row's 2 widened
// weight vectors and scale, x as memory operands); with the accumulators in registers (session
// 5) 2 x 4 ran at 61-69 GMAC/s, 2 x 6 at 57-69, 3 x 4 at 54-64 and 4 x 2 at 50-60. The weights of
// a row block stay in L1 while the token tiles pass over them, so each weight byte comes from
// memory once per call.
struct Bf16 : Bf16Weights {
  const float* x;
  static constexpr int kRowsOne = 4, kRowsMany = 3, kTokens = 4;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T], int64_t ahead) const {
    TileBf16<R, T>(w + row0 * k, k, m * k, x + i0 * k, out, 2 * ahead * k);
  }
};
struct I8 : I8Weights {
  QuantX qx;
  static constexpr int kRowsOne = 4, kRowsMany = 2, kTokens = 4;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T], int64_t ahead) const {
    TileI8<R, T>(w + row0 * k, scales + row0 * nb, nb, k, m, qx, i0, out, ahead);
  }
};

}  // namespace

void MatVecBf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const float* x, int64_t t,
                int64_t n, const float* bias, float* y) {
  TileRows(Bf16{{w, k}, x}, r0, r1, t, n, bias, y);
}

// x [T,K] -> int16 [T,K16] and one scale per token, K16 = K & ~15.
void QuantizeX(const float* x, int64_t t, int64_t k, int16_t* q, float* s) {
  const int64_t k16 = k & ~int64_t{15};
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < t; ++i) {
    const float* xi = x + i * k;
    int16_t* qi = q + i * k16;
    __m256 m = _mm256_setzero_ps();
    for (int64_t j = 0; j < k16; j += 8) {
      m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xi + j), abs_mask));
    }
    const float amax = HMax(m);
    s[i] = amax > 0.f ? amax / 32767.f : 1.f;
    const __m256 inv = _mm256_set1_ps(amax > 0.f ? 32767.f / amax : 0.f);
    for (int64_t j = 0; j < k16; j += 16) {
      // packs interleaves 128-bit lanes; the permute restores column order. It also saturates,
      // so a product that rounds to 32768 stays in range.
      const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xi + j), inv));
      const __m256i bb = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xi + j + 8), inv));
      const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, bb), 0xd8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qi + j), packed);
    }
  }
}

void MatVecI8(const int8_t* w, const float* scales, int64_t r0, int64_t r1, int64_t k,
              const float* x, const int16_t* xq, const float* xs, int64_t t, int64_t n,
              const float* bias, float* y) {
  TileRows(I8{{w, scales, k, zaya_i8_scales(k)}, QuantX{xq, xs, x, k & ~int64_t{15}}}, r0, r1, t, n,
           bias, y);
}

}  // namespace zaya::cpu::avx2
