// Hand-written AVX-512 matvec tiles: bf16 weights through the BF16 extension's dot product
// (vdpbf16ps), int8 weights through VNNI's byte dot product (vpdpbusd). kernels.cc calls these
// only when MatVecIsa() is Isa::kAvx512, i.e. the CPU has AVX-512 F/BW/VL/DQ, BF16 and VNNI; this
// file pair is compiled with those -m flags.
//
// Why vdpbf16ps: one instruction multiplies 32 bf16 pairs and adds them into 16 f32 lanes, with no
// conversion of the weights; the f32 path needs a widening and two FMAs for the same 32 products.
// On Zen 4 (two cores, tests/backends/cpu_kernel_bench --fma-peak and an instruction loop) both
// issue one zmm instruction per cycle per core, so batched bf16 decode, which is bound by
// arithmetic, gets up to twice the multiply-adds per cycle. The price: x is rounded to bf16 (round
// to nearest even) first, which backend.h allows for bf16 weights.
//
// Why vpdpbusd: 64 byte products per instruction at the same one per cycle, against 32 for the
// int16 forms; the price is x rounded to 8 bits per block of columns (backend.h allows it; the
// error it adds is in docs/performance.md "int8 against bf16").
//
// Contract (MatVecRows in kernels.h, less the activation, which its caller applies after): rows
// [r0, r1) of y[T,N] = x[T,K] W^T + bias, W bf16 or int8 (+ f32 scales per kI8Group values)
// row-major [N,K]. Each (row, token) sum runs in one fixed order whatever the tile shape or T: 16
// lanes over the multiples of 32 columns (bf16 x; for int8, exact integer sums per block scaled
// into the lanes), a fixed horizontal sum, then the remaining columns in f32 and in order. A row's
// output is bitwise independent of the batch. Thread safety: pure apart from y (and the outputs of
// RoundX and QuantizeX8); callers split rows between threads. No standard-library templates here,
// for the reason kernels_avx2.h gives.
#pragma once

#include <cstdint>

#include "kernels.h"

namespace zaya::cpu::avx512 {

// x [T,K] -> bf16 [T, K & ~31], rounded to nearest even (the form MatVecBf16 multiplies).
void RoundX(const float* x, int64_t t, int64_t k, uint16_t* xb);
// xb from RoundX; x itself for the columns past the last multiple of 32.
void MatVecBf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const float* x,
                const uint16_t* xb, int64_t t, int64_t n, const float* bias, float* y);

// bf16 weights in the 16-row tile layout (kernels.h PackBf16Tiles), x as PairX makes it.
// Each (row, token) sum runs in one f32 lane over the column pairs in order (vdpbf16ps), whatever
// the tile shape or T, so a row's output is bitwise independent of the batch here too; it is not
// the row-major tiles' order (16 lanes, then a horizontal sum), so the two layouts differ within
// the rounding of x to bf16.
// x [T,K] (K even) -> bf16 pairs rounded as RoundX, by the token passes the tiles take,
// Bf16BlockPassTokens(T) tokens each (the last one fewer; as QuantizeXQuads below, so that a
// pass reads its x in order): for the pass of w tokens from i0, xt[i0 K / 2 + p w + i] = the
// pair (x[i0 + i][2p], x[i0 + i][2p + 1]). T K / 2 values.
int64_t Bf16BlockPassTokens(int64_t t);
// Tokens [i_begin, i_end) of the T only (each token's values are its own: ranges may run on
// different threads at once).
void PairX(const float* x, int64_t t, int64_t k, uint32_t* xt, int64_t i_begin, int64_t i_end);
// Rows [r0, r1), both multiples of kBf16TileRows (or r1 = N, itself one).
void MatVecBf16Tiles(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const uint32_t* xt,
                     int64_t t, int64_t n, const float* bias, float* y);

// int8 weights through VNNI (vpdpbusd): x rounded to 8 bits with one scale per 32-column block
// (each value off by at most 2^-7 of its block's largest |x|; backend.h allows it), offset by 128
// into unsigned bytes [T, K & ~31], each 256-column group in the tiles' order, and the scales
// [T, X8ScaleStride(K)] (see kernels_avx512.cc). Token rows start 64-byte aligned when K & ~31
// is a multiple of 64 and xq is (the model's widths are), which the tiles like but do not need.
int64_t X8ScaleStride(int64_t k);
void QuantizeX8(const float* x, int64_t t, int64_t k, uint8_t* xq, float* xs);
// tile_layout: w is in the tile layout (kernels.h PackI8Tiles), not row-major.
void MatVecI8(const int8_t* w, bool tile_layout, const float* scales, int64_t r0, int64_t r1,
              int64_t k, const float* x, const uint8_t* xq, const float* xs, int64_t t, int64_t n,
              const float* bias, float* y);

// int8 weights in the 16-row block layout (kernels.h PackI8Blocks). x [T,K] (K % 128 == 0) is
// rounded as QuantizeX8 rounds it, but per group of kI8Group = 128 columns (the weights' scale
// groups, so that one float step serves 128 columns) and kept signed, and stored by
// the token passes the tiles take, I8BlockPassTokens(T) tokens each (the last one fewer), so
// that a pass reads its x in order (a [K / 4][T] layout had a 512-token prefill read 4 bytes
// per 2 KiB from L3): for the pass of w tokens from i0, xq[i0 K / 4 + p w + i] = the 4 bytes of
// columns 4p .. 4p + 3 of token i0 + i, xs[i0 K / 128 + q w + i] its group q's scale and
// xc[i0 K / 128 + q w + i] = -128 x the sum of group q's bytes (the layout's offset, see
// kernels_avx512.cc I8Blocks). Each array holds T K / 4 or T K / 128 values. Each (row, token)
// sum runs in one f32 lane over the groups in order, whatever the tile or T: a row's output is
// bitwise independent of the batch; it is not the row-major tiles' order, so the two layouts differ
// within float rounding.
int64_t I8BlockPassTokens(int64_t t);
// Tokens [i_begin, i_end) of the T only, as PairX.
void QuantizeXQuads(const float* x, int64_t t, int64_t k, uint32_t* xq, float* xs, int32_t* xc,
                    int64_t i_begin, int64_t i_end);
// x [T,K] (K % 128 == 0) rounded as QuantizeXQuads rounds it (the same bytes, scales and
// offsets), for the AMX tiles (amx::MatVecI8Blocks): group q's 64-column chunk c of token i at
// xa[((2q + c) T + i) 64 .. + 64) as signed bytes, so that 16 tokens' chunk is one tile of 16 x 64
// bytes; its scale at xs[q T + i] and offset at xc[q T + i]. Tokens [i_begin, i_end) only.
void QuantizeXChunks(const float* x, int64_t t, int64_t k, int8_t* xa, float* xs, int32_t* xc,
                     int64_t i_begin, int64_t i_end);
// Rows [r0, r1), both multiples of kI8TileRows (or r1 = N, itself one).
// w: the block layout with its scales (kernels.h PackI8Blocks).
void MatVecI8Blocks(const uint8_t* w, int64_t r0, int64_t r1, int64_t k, const uint32_t* xq,
                    const float* xs, const int32_t* xc, int64_t t, int64_t n, const float* bias,
                    float* y);

}  // namespace zaya::cpu::avx512
