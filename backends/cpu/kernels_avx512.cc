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
      PrefetchStream(w + r * rs + j);
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
  AddTailBf16<R, T>(w, rs, x, k, k32, out);
}

// Tile shapes (32 zmm registers). One token: 4 rows (bound by memory). More tokens: 4 rows x 6
// tokens, 24 accumulators + 4 weight vectors + x, so each weight load feeds 6 dot products and
// each x load 4.
struct Bf16 : Bf16Weights {
  int64_t k32;
  const uint16_t* xb;
  const float* x;
  static constexpr int kRowsOne = 4, kRowsMany = 4, kTokens = 6;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T]) const {
    TileBf16<R, T>(w + row0 * k, k, m * k, xb + i0 * k32, k32, x + i0 * k, out);
  }
};

// int8 weights with VNNI. x is rounded to int16 with one scale per token, as for the AVX2 tiles
// (QuantizeX8 below; backend.h allows it), and the integer products run in vpdpwssd. Each int8
// block of 32 columns has its own scale, so integer sums must become floats once per block and
// row; what decides the speed is how many products an int32 lane holds by then. One block per zmm
// leaves 2 per lane (a conversion and an FMA per 2 products); here 128 columns (4 blocks) share a
// zmm, a 128-bit lane per block, so each lane sums 8 products in 4 instructions before one
// conversion and one FMA with a vector of the 4 blocks' scales. The weights of 4 blocks are
// rearranged for that once per row and group (two vpermt2q and four widenings) and then serve
// every token of the tile; x is stored in the same order by QuantizeX8.
//
// Per (row, token): acc += float(int sums of group g) * scales over the 128-column groups, then
// the whole 32-column blocks past the last group (2 products per lane), HSum, times x's scale,
// then the columns past the last multiple of 32 in float, in order.
struct QuantX8 {
  const int16_t* q;  // [T, K32], groups of 128 columns in tile order (see QuantizeX8)
  const float* s;    // [T]
  const float* x;    // [T, K] for the tail
  int64_t k32;
};

typedef long long I64x8 __attribute__((vector_size(64)));
typedef long long I64x4 __attribute__((vector_size(32)));

// The 4 widened weight vectors of one row and 128-column group: vector q holds columns
// 32L + 8q .. 32L + 8q + 7 of block L in its 128-bit lane L.
ZAYA_INLINE void LoadGroupI8(const int8_t* w, __m512i out[4]) {
  const __m512i a = _mm512_loadu_si512(w), b = _mm512_loadu_si512(w + 64);
  // qword 4L + q of the group is block L's chunk q.
  const __m512i p01 = _mm512_permutex2var_epi64(a, _mm512_set_epi64(13, 9, 5, 1, 12, 8, 4, 0), b);
  const __m512i p23 = _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 11, 7, 3, 14, 10, 6, 2), b);
  const I64x8 v01 = reinterpret_cast<I64x8>(p01), v23 = reinterpret_cast<I64x8>(p23);
  out[0] = _mm512_cvtepi8_epi16(reinterpret_cast<__m256i>(__builtin_shufflevector(v01, v01, 0, 1, 2, 3)));
  out[1] = _mm512_cvtepi8_epi16(reinterpret_cast<__m256i>(__builtin_shufflevector(v01, v01, 4, 5, 6, 7)));
  out[2] = _mm512_cvtepi8_epi16(reinterpret_cast<__m256i>(__builtin_shufflevector(v23, v23, 0, 1, 2, 3)));
  out[3] = _mm512_cvtepi8_epi16(reinterpret_cast<__m256i>(__builtin_shufflevector(v23, v23, 4, 5, 6, 7)));
}

// Row r of the tile starts at w + r * m * k, its scales at scales + r * m * nb.
template <int R, int T>
ZAYA_INLINE void TileI8(const int8_t* w, const float* scales, int64_t nb, int64_t k, int64_t m,
                        const QuantX8& qx, int64_t i0, float out[R][T]) {
  const int64_t rs = m * k, srs = m * nb, k32 = qx.k32, k128 = k32 & ~int64_t{127};
  const int16_t* xq = qx.q + i0 * k32;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm512_setzero_ps();
  const __m512i lane_of_block = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  for (int64_t j = 0; j < k128; j += 128) {
    __m512i wv[R][4];
    __m512 sv[R];
    for (int r = 0; r < R; ++r) {
      PrefetchStream(w + r * rs + j);
      PrefetchStream(w + r * rs + j + 64);
      Prefetch(scales + r * srs + ((kStreamAheadBytes + j) >> 5));
      LoadGroupI8(w + r * rs + j, wv[r]);
      sv[r] = _mm512_permutexvar_ps(
          lane_of_block, _mm512_zextps128_ps512(_mm_loadu_ps(scales + r * srs + (j >> 5))));
    }
    for (int i = 0; i < T; ++i) {
      const int16_t* xi = xq + i * k32 + j;
      const __m512i x0 = _mm512_load_si512(xi), x1 = _mm512_load_si512(xi + 32);
      const __m512i x2 = _mm512_load_si512(xi + 64), x3 = _mm512_load_si512(xi + 96);
      for (int r = 0; r < R; ++r) {
        // Two chains of two, joined by an add off the multiply pipes: one chain of four
        // (~20 cycles of latency) left the pipes idle. Integer sums: the order changes no bit.
        const __m512i s01 = _mm512_dpwssd_epi32(_mm512_madd_epi16(wv[r][0], x0), wv[r][1], x1);
        const __m512i s23 = _mm512_dpwssd_epi32(_mm512_madd_epi16(wv[r][2], x2), wv[r][3], x3);
        const __m512i isum = _mm512_add_epi32(s01, s23);
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sv[r], acc[r][i]);
      }
    }
  }
  for (int64_t j = k128; j < k32; j += 32) {  // whole blocks past the last group
    for (int r = 0; r < R; ++r) {
      const __m512i w0 = _mm512_cvtepi8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * rs + j)));
      const __m512 ws = _mm512_set1_ps(scales[r * srs + (j >> 5)]);
      for (int i = 0; i < T; ++i) {
        const __m512i isum = _mm512_madd_epi16(w0, _mm512_loadu_si512(xq + i * k32 + j));
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), ws, acc[r][i]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) out[r][i] = HSum(acc[r][i]) * qx.s[i0 + i];
  AddTailI8<R, T>(w, scales, rs, srs, qx.x + i0 * k, k, k32, out);
}

// Tile shapes: one token, 4 rows (bound by memory); more tokens, 2 rows x 6 tokens: x's 4 vectors
// for a group load once per token and the rows' 8 weight vectors and 2 scale vectors stay in
// registers with the 12 accumulators.
struct I8 : I8Weights {
  QuantX8 qx;
  static constexpr int kRowsOne = 4, kRowsMany = 2, kTokens = 6;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T]) const {
    TileI8<R, T>(w + row0 * k, scales + row0 * nb, nb, k, m, qx, i0, out);
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
  TileRows(Bf16{{w, k}, k & ~int64_t{31}, xb, x}, r0, r1, t, n, bias, act, y);
}

void QuantizeX8(const float* x, int64_t t, int64_t k, int16_t* xq, float* xs) {
  const int64_t k32 = k & ~int64_t{31}, k128 = k32 & ~int64_t{127};
  for (int64_t i = 0; i < t; ++i) {
    const float* xi = x + i * k;
    int16_t* qi = xq + i * k32;
    __m512 m = _mm512_setzero_ps();
    for (int64_t j = 0; j < k32; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xi + j)));
    const float amax = _mm512_reduce_max_ps(m);
    xs[i] = amax > 0.f ? amax / 32767.f : 1.f;
    const __m512 inv = _mm512_set1_ps(amax > 0.f ? 32767.f / amax : 0.f);
    // Saturating narrowing, so that a product that rounds to 32768 stays in range.
    auto q16 = [&](int64_t j) __attribute__((always_inline)) {
      return _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xi + j), inv)));
    };
    for (int64_t j = 0; j < k128; j += 128) {
      // 16 values (one 8-column chunk of two blocks) per store: chunk c of block L goes to
      // position 4c + L of the group, the weights' order after LoadGroupI8.
      for (int64_t c = 0; c < 16; c += 2) {
        const int64_t block = c / 4, chunk = c % 4;
        const __m256i v = q16(j + 32 * block + 8 * chunk);  // chunks (block, chunk), (block, chunk + 1)
        _mm_store_si128(reinterpret_cast<__m128i*>(qi + j + 8 * (4 * chunk + block)),
                        _mm256_castsi256_si128(v));
        _mm_store_si128(reinterpret_cast<__m128i*>(qi + j + 8 * (4 * (chunk + 1) + block)),
                        _mm256_extracti128_si256(v, 1));
      }
    }
    for (int64_t j = k128; j < k32; j += 16) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qi + j), q16(j));
    }
  }
}

void MatVecI8(const int8_t* w, const float* scales, int64_t r0, int64_t r1, int64_t k,
              const float* x, const int16_t* xq, const float* xs, int64_t t, int64_t n,
              const float* bias, Act act, float* y) {
  TileRows(I8{{w, scales, k, (k + 31) / 32}, QuantX8{xq, xs, x, k & ~int64_t{31}}}, r0, r1, t, n,
           bias, act, y);
}

}  // namespace zaya::cpu::avx512
