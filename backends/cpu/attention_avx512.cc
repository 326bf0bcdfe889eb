// AVX-512 block kernels of attention.h: built with the AVX-512 flags for this file only, and only
// called where MatVecIsa() is kAvx512.
//
// Both kernels take query heads 4 at a time (ZAYA1's 4 per KV head) and convert each bf16 row
// chunk in registers once for all of them. Scores: 4 heads x 4 rows of 16-lane sums, then one
// transpose-and-add tree puts the 16 sums in one vector, where the generic path (DotRows) spends
// a horizontal sum of ~10 instructions per (row, head).
#include <immintrin.h>

#include "attention.h"
#include "attention_driver.h"

namespace zaya::cpu::avx512 {
namespace {

#define ZAYA_INLINE __attribute__((always_inline)) inline

ZAYA_INLINE __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
ZAYA_INLINE __m512 Load16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
ZAYA_INLINE __m512 Load16(const int8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
}

// Lane p of the result = the sum of a[p]'s 16 lanes, in a fixed tree.
ZAYA_INLINE __m512 Reduce16(__m512 a[16]) {
  __m512 b[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: (a0 + a2, b0 + b2, a1 + a3, b1 + b3)
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  }
  __m512 c[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: the lane's sum of rows 4i .. 4i + 3
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
  }
  // Now c[i]'s 128-bit lane L holds row 4i + r's partial sum over lane L's quarter at r.
  const __m512 d0 =
      _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x44), _mm512_shuffle_f32x4(c[0], c[1], 0xEE));
  const __m512 d1 =
      _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x44), _mm512_shuffle_f32x4(c[2], c[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, 0x88), _mm512_shuffle_f32x4(d0, d1, 0xDD));
}

// Scores of 4 query heads (q: the 4 heads' hd = C x 16 values each, one after the other) against
// rows 0 .. PB - 1: 16 accumulators (head x row), each row's 16 values converted in registers
// once per column chunk and used by the 4 heads, each head's chunk loaded once and used by the
// PB rows. One load per two FMAs: the first form (rows converted into an L1 buffer, then 16 rows
// per head with the head's q in registers) was bound by its loads and stores, ~30 cycles a row
// and KV head for 4 heads where its 32 FMAs need 16. Lane 4 hh + pp of the result is head hh's
// score of row pp.
template <int C, int PB, class Row>
ZAYA_INLINE __m512 ScoresQuad(const float* q, const Row* rows, int64_t stride) {
  __m512 a[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) a[i] = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    __m512 r[4];
#pragma GCC unroll 4
    for (int pp = 0; pp < 4; ++pp) {
      r[pp] = pp < PB ? Load16(rows + pp * stride + c * 16) : _mm512_setzero_ps();
    }
#pragma GCC unroll 4
    for (int hh = 0; hh < 4; ++hh) {
      const __m512 qv = _mm512_loadu_ps(q + hh * C * 16 + c * 16);
#pragma GCC unroll 4
      for (int pp = 0; pp < 4; ++pp) a[hh * 4 + pp] = _mm512_fmadd_ps(qv, r[pp], a[hh * 4 + pp]);
    }
  }
  return Reduce16(a);
}

template <int C, class Row>
void ScoresImpl(const float* q, int64_t g, const Row* rows, int64_t stride, int64_t n, float* out,
                int64_t out_stride) {
  ScoreHeadGroups<4, C * 16>(
      q, g, rows, stride, n, out, out_stride,
      [](const float* q4, const Row* r, int64_t st, int64_t pb, float* lanes) {
        switch (pb) {
          case 1:
            return _mm512_store_ps(lanes, ScoresQuad<C, 1>(q4, r, st));
          case 2:
            return _mm512_store_ps(lanes, ScoresQuad<C, 2>(q4, r, st));
          case 3:
            return _mm512_store_ps(lanes, ScoresQuad<C, 3>(q4, r, st));
          default:
            return _mm512_store_ps(lanes, ScoresQuad<C, 4>(q4, r, st));
        }
      });
}

// acc[h] += sum_p w[h][p] row_p over columns [0, CB x 16) for HB heads: HB x CB accumulators in
// registers through all n rows, each row chunk converted once and used by the heads.
template <int CB, int HB, class Row>
ZAYA_INLINE void AccumulateQuad(const float* w, int64_t w_stride, int64_t hd, const Row* rows,
                                int64_t stride, int64_t n, float* acc) {
  __m512 a[HB][CB];
#pragma GCC unroll 4
  for (int hh = 0; hh < HB; ++hh)
#pragma GCC unroll 4
    for (int cc = 0; cc < CB; ++cc) a[hh][cc] = _mm512_loadu_ps(acc + hh * hd + cc * 16);
  for (int64_t p = 0; p < n; ++p) {
    __m512 r[CB];
#pragma GCC unroll 4
    for (int cc = 0; cc < CB; ++cc) r[cc] = Load16(rows + p * stride + cc * 16);
#pragma GCC unroll 4
    for (int hh = 0; hh < HB; ++hh) {
      const __m512 wv = _mm512_set1_ps(w[hh * w_stride + p]);
#pragma GCC unroll 4
      for (int cc = 0; cc < CB; ++cc) a[hh][cc] = _mm512_fmadd_ps(wv, r[cc], a[hh][cc]);
    }
  }
#pragma GCC unroll 4
  for (int hh = 0; hh < HB; ++hh)
#pragma GCC unroll 4
    for (int cc = 0; cc < CB; ++cc) _mm512_storeu_ps(acc + hh * hd + cc * 16, a[hh][cc]);
}

template <int CB, class Row>
ZAYA_INLINE void AccumulateHeads(int64_t hb, const float* w, int64_t w_stride, int64_t hd,
                                 const Row* rows, int64_t stride, int64_t n, float* acc) {
  switch (hb) {
    case 1:
      return AccumulateQuad<CB, 1>(w, w_stride, hd, rows, stride, n, acc);
    case 2:
      return AccumulateQuad<CB, 2>(w, w_stride, hd, rows, stride, n, acc);
    case 3:
      return AccumulateQuad<CB, 3>(w, w_stride, hd, rows, stride, n, acc);
    default:
      return AccumulateQuad<CB, 4>(w, w_stride, hd, rows, stride, n, acc);
  }
}

// Heads 4 at a time, columns in chunks of 4 x 16 (ZAYA1's 128: two passes over the rows, the
// second from L1).
template <int C, class Row>
void AccumulateImpl(const float* w, int64_t w_stride, int64_t g, const Row* rows, int64_t stride,
                    int64_t n, float* acc) {
  constexpr int64_t hd = C * 16;
  constexpr int kWhole = C / 4 * 4;
  for (int64_t h0 = 0; h0 < g; h0 += 4) {
    const int64_t hb = g - h0 < 4 ? g - h0 : 4;
    const float* wh = w + h0 * w_stride;
    float* ah = acc + h0 * hd;
    for (int c0 = 0; c0 < kWhole; c0 += 4) {
      AccumulateHeads<4>(hb, wh, w_stride, hd, rows + c0 * 16, stride, n, ah + c0 * 16);
    }
    if constexpr (C % 4 != 0) {
      AccumulateHeads<C % 4>(hb, wh, w_stride, hd, rows + kWhole * 16, stride, n, ah + kWhole * 16);
    }
  }
}

// fn.template operator()<C>() for C = hd / 16.
template <class Fn>
void ByChunks(int64_t hd, const Fn& fn) {
  switch (hd / 16) {
    case 1:
      return fn.template operator()<1>();
    case 2:
      return fn.template operator()<2>();
    case 3:
      return fn.template operator()<3>();
    case 4:
      return fn.template operator()<4>();
    case 5:
      return fn.template operator()<5>();
    case 6:
      return fn.template operator()<6>();
    case 7:
      return fn.template operator()<7>();
    default:
      return fn.template operator()<8>();
  }
}

template <class Row>
void Scores(const float* q, int64_t g, int64_t hd, const Row* rows, int64_t stride, int64_t n,
            float* out, int64_t out_stride) {
  ByChunks(hd, [&]<int C>() { ScoresImpl<C>(q, g, rows, stride, n, out, out_stride); });
}

template <class Row>
void Accumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const Row* rows,
                int64_t stride, int64_t n, float* acc) {
  ByChunks(hd, [&]<int C>() { AccumulateImpl<C>(w, w_stride, g, rows, stride, n, acc); });
}

}  // namespace

bool AttendFits(int64_t hd) { return hd > 0 && hd % 16 == 0 && hd <= 128; }

void KvScores(const float* q, int64_t g, int64_t hd, const float* rows, int64_t stride, int64_t n,
              float* out, int64_t out_stride) {
  Scores(q, g, hd, rows, stride, n, out, out_stride);
}
void KvScores(const float* q, int64_t g, int64_t hd, const uint16_t* rows, int64_t stride,
              int64_t n, float* out, int64_t out_stride) {
  Scores(q, g, hd, rows, stride, n, out, out_stride);
}
void KvScores(const float* q, int64_t g, int64_t hd, const int8_t* rows, int64_t stride, int64_t n,
              float* out, int64_t out_stride) {
  Scores(q, g, hd, rows, stride, n, out, out_stride);
}
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const float* rows,
                  int64_t stride, int64_t n, float* acc) {
  Accumulate(w, w_stride, g, hd, rows, stride, n, acc);
}
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const uint16_t* rows,
                  int64_t stride, int64_t n, float* acc) {
  Accumulate(w, w_stride, g, hd, rows, stride, n, acc);
}

void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const int8_t* rows,
                  int64_t stride, int64_t n, float* acc) {
  Accumulate(w, w_stride, g, hd, rows, stride, n, acc);
}

}  // namespace zaya::cpu::avx512
