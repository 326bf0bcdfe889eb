// AVX2+FMA block kernels of attention.h: built with -mavx2 -mfma for this file only, and only
// called where MatVecIsa() is kAvx2 (a CPU without the AVX-512 tiles).
//
// The AVX-512 file's scheme in 8 lanes and 16 registers: scores take 4 query heads x 2 rows per
// register block (8 accumulators, then one transpose-and-add tree), the weighted V 4 heads x 16
// columns; each bf16 row chunk is converted once in registers for the 4 heads.
#include <immintrin.h>

#include "attention.h"
#include "attention_driver.h"

namespace zaya::cpu::avx2 {
namespace {

#define ZAYA_INLINE __attribute__((always_inline)) inline

ZAYA_INLINE __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
ZAYA_INLINE __m256 Load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
ZAYA_INLINE __m256 Load8(const int8_t* p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

// Lane i of the result = the sum of a[i]'s 8 lanes, in a fixed tree.
ZAYA_INLINE __m256 Reduce8(__m256 a[8]) {
  __m256 b[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: (a0 + a2, b0 + b2, a1 + a3, b1 + b3)
    b[i] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  }
  // Per 128-bit lane: the lane's sums of accumulators 4i .. 4i + 3.
  const __m256 c0 =
      _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], 0x44), _mm256_shuffle_ps(b[0], b[1], 0xEE));
  const __m256 c1 =
      _mm256_add_ps(_mm256_shuffle_ps(b[2], b[3], 0x44), _mm256_shuffle_ps(b[2], b[3], 0xEE));
  return _mm256_add_ps(_mm256_permute2f128_ps(c0, c1, 0x20), _mm256_permute2f128_ps(c0, c1, 0x31));
}

// Scores of 4 query heads (q: hd = C x 8 values each, one after the other) against rows 0 ..
// PB - 1 (PB <= 2). Lane 2 hh + pp of the result is head hh's score of row pp.
template <int C, int PB, class Row>
ZAYA_INLINE __m256 ScoresPair(const float* q, const Row* rows, int64_t stride) {
  __m256 a[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
  for (int c = 0; c < C; ++c) {
    __m256 r[2];
#pragma GCC unroll 2
    for (int pp = 0; pp < 2; ++pp) {
      r[pp] = pp < PB ? Load8(rows + pp * stride + c * 8) : _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (int hh = 0; hh < 4; ++hh) {
      const __m256 qv = _mm256_loadu_ps(q + hh * C * 8 + c * 8);
#pragma GCC unroll 2
      for (int pp = 0; pp < 2; ++pp) a[hh * 2 + pp] = _mm256_fmadd_ps(qv, r[pp], a[hh * 2 + pp]);
    }
  }
  return Reduce8(a);
}

template <int C, class Row>
void ScoresImpl(const float* q, int64_t g, const Row* rows, int64_t stride, int64_t n, float* out,
                int64_t out_stride) {
  ScoreHeadGroups<2, C * 8>(
      q, g, rows, stride, n, out, out_stride,
      [](const float* q4, const Row* r, int64_t st, int64_t pb, float* lanes) {
        _mm256_store_ps(lanes, pb == 2 ? ScoresPair<C, 2>(q4, r, st) : ScoresPair<C, 1>(q4, r, st));
      });
}

// acc[h] += sum_p w[h][p] row_p over columns [0, 16) for HB heads, through all n rows.
template <int HB, class Row>
ZAYA_INLINE void AccumulateCols16(const float* w, int64_t w_stride, int64_t hd, const Row* rows,
                                  int64_t stride, int64_t n, float* acc) {
  __m256 a[HB][2];
#pragma GCC unroll 4
  for (int hh = 0; hh < HB; ++hh)
#pragma GCC unroll 2
    for (int cc = 0; cc < 2; ++cc) a[hh][cc] = _mm256_loadu_ps(acc + hh * hd + cc * 8);
  for (int64_t p = 0; p < n; ++p) {
    const __m256 r0 = Load8(rows + p * stride), r1 = Load8(rows + p * stride + 8);
#pragma GCC unroll 4
    for (int hh = 0; hh < HB; ++hh) {
      const __m256 wv = _mm256_broadcast_ss(w + hh * w_stride + p);
      a[hh][0] = _mm256_fmadd_ps(wv, r0, a[hh][0]);
      a[hh][1] = _mm256_fmadd_ps(wv, r1, a[hh][1]);
    }
  }
#pragma GCC unroll 4
  for (int hh = 0; hh < HB; ++hh)
#pragma GCC unroll 2
    for (int cc = 0; cc < 2; ++cc) _mm256_storeu_ps(acc + hh * hd + cc * 8, a[hh][cc]);
}

// The same for 8 columns (a head size that is an odd multiple of 8).
template <int HB, class Row>
ZAYA_INLINE void AccumulateCols8(const float* w, int64_t w_stride, int64_t hd, const Row* rows,
                                 int64_t stride, int64_t n, float* acc) {
  __m256 a[HB];
#pragma GCC unroll 4
  for (int hh = 0; hh < HB; ++hh) a[hh] = _mm256_loadu_ps(acc + hh * hd);
  for (int64_t p = 0; p < n; ++p) {
    const __m256 r = Load8(rows + p * stride);
#pragma GCC unroll 4
    for (int hh = 0; hh < HB; ++hh) {
      a[hh] = _mm256_fmadd_ps(_mm256_broadcast_ss(w + hh * w_stride + p), r, a[hh]);
    }
  }
#pragma GCC unroll 4
  for (int hh = 0; hh < HB; ++hh) _mm256_storeu_ps(acc + hh * hd, a[hh]);
}

template <int HB, class Row>
void AccumulateHeads(const float* w, int64_t w_stride, int64_t hd, const Row* rows, int64_t stride,
                     int64_t n, float* acc) {
  int64_t c0 = 0;
  for (; c0 + 16 <= hd; c0 += 16) {
    AccumulateCols16<HB>(w, w_stride, hd, rows + c0, stride, n, acc + c0);
  }
  if (c0 < hd) AccumulateCols8<HB>(w, w_stride, hd, rows + c0, stride, n, acc + c0);
}

template <class Row>
void Accumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const Row* rows,
                int64_t stride, int64_t n, float* acc) {
  for (int64_t h0 = 0; h0 < g; h0 += 4) {
    const float* wh = w + h0 * w_stride;
    float* ah = acc + h0 * hd;
    switch (g - h0 < 4 ? g - h0 : 4) {
      case 1:
        AccumulateHeads<1>(wh, w_stride, hd, rows, stride, n, ah);
        break;
      case 2:
        AccumulateHeads<2>(wh, w_stride, hd, rows, stride, n, ah);
        break;
      case 3:
        AccumulateHeads<3>(wh, w_stride, hd, rows, stride, n, ah);
        break;
      default:
        AccumulateHeads<4>(wh, w_stride, hd, rows, stride, n, ah);
        break;
    }
  }
}

template <class Row>
void Scores(const float* q, int64_t g, int64_t hd, const Row* rows, int64_t stride, int64_t n,
            float* out, int64_t out_stride) {
  switch (hd / 8) {
    case 1:
      return ScoresImpl<1>(q, g, rows, stride, n, out, out_stride);
    case 2:
      return ScoresImpl<2>(q, g, rows, stride, n, out, out_stride);
    case 3:
      return ScoresImpl<3>(q, g, rows, stride, n, out, out_stride);
    case 4:
      return ScoresImpl<4>(q, g, rows, stride, n, out, out_stride);
    case 5:
      return ScoresImpl<5>(q, g, rows, stride, n, out, out_stride);
    case 6:
      return ScoresImpl<6>(q, g, rows, stride, n, out, out_stride);
    case 7:
      return ScoresImpl<7>(q, g, rows, stride, n, out, out_stride);
    case 8:
      return ScoresImpl<8>(q, g, rows, stride, n, out, out_stride);
    case 9:
      return ScoresImpl<9>(q, g, rows, stride, n, out, out_stride);
    case 10:
      return ScoresImpl<10>(q, g, rows, stride, n, out, out_stride);
    case 11:
      return ScoresImpl<11>(q, g, rows, stride, n, out, out_stride);
    case 12:
      return ScoresImpl<12>(q, g, rows, stride, n, out, out_stride);
    case 13:
      return ScoresImpl<13>(q, g, rows, stride, n, out, out_stride);
    case 14:
      return ScoresImpl<14>(q, g, rows, stride, n, out, out_stride);
    case 15:
      return ScoresImpl<15>(q, g, rows, stride, n, out, out_stride);
    default:
      return ScoresImpl<16>(q, g, rows, stride, n, out, out_stride);
  }
}

}  // namespace

bool AttendFits(int64_t hd) { return hd > 0 && hd % 8 == 0 && hd <= 128; }

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

}  // namespace zaya::cpu::avx2
