// How the attention block kernels (attention_avx512.cc, attention_avx2.cc) walk query heads and
// rows for the scores; each ISA file supplies only its register block.
//
// Everything here lives in an anonymous namespace on purpose, as in tile_driver.h: the header is
// compiled into files built with different -m flags, and a template instantiated in both would
// otherwise be one symbol that the linker may take from the AVX-512 file for the AVX2 path.
#pragma once

#include <cstdint>

namespace zaya::cpu {
namespace {  // NOLINT(google-build-namespaces): see the header comment

// out[h * out_stride + p] = q_h . row_p for the g query heads q [g][hd] and rows [0, n), taken 4
// heads x kRows rows at a time: block(q4, rows, stride, pb, lanes) fills lanes[4 * kRows] with
// the scores of the 4 heads at q4 (hd values each, one after the other) against rows 0 .. pb - 1
// (pb <= kRows), head hh's score of row pp at lanes[hh * kRows + pp]. A group of fewer than 4
// heads repeats its first head, whose extra scores are not stored.
template <int kRows, int kHd, class Row, class Block>
__attribute__((always_inline)) inline void ScoreHeadGroups(const float* q, int64_t g,
                                                           const Row* rows, int64_t stride,
                                                           int64_t n, float* out,
                                                           int64_t out_stride, const Block& block) {
  for (int64_t h0 = 0; h0 < g; h0 += 4) {
    alignas(64) float qs[4 * kHd];
    const float* qq = q + h0 * kHd;
    if (h0 + 4 > g) {
      for (int64_t hh = 0; hh < 4; ++hh) {
        const float* from = q + (h0 + (h0 + hh < g ? hh : 0)) * kHd;
        for (int64_t j = 0; j < kHd; ++j) qs[hh * kHd + j] = from[j];
      }
      qq = qs;
    }
    for (int64_t p0 = 0; p0 < n; p0 += kRows) {
      const int64_t pb = n - p0 < kRows ? n - p0 : kRows;
      alignas(64) float lanes[4 * kRows];
      block(qq, rows + p0 * stride, stride, pb, lanes);
      for (int64_t hh = 0; hh < 4 && h0 + hh < g; ++hh) {
        float* o = out + (h0 + hh) * out_stride + p0;
        if (pb == kRows) {  // a whole block: a fixed count, which the compiler stores at once
#pragma GCC unroll 4
          for (int pp = 0; pp < kRows; ++pp) o[pp] = lanes[hh * kRows + pp];
        } else {
          for (int64_t pp = 0; pp < pb; ++pp) o[pp] = lanes[hh * kRows + pp];
        }
      }
    }
  }
}

}  // namespace
}  // namespace zaya::cpu
