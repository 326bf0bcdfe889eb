// Hand-written AVX2+FMA matvec tiles for bf16 and int8 weights: the decode hot path on x86-64-v3,
// and for int8 on AVX-512 machines too. kernels.cc calls these only when MatVecIsa() is kAvx2 or
// above; this file pair is compiled with -mavx2 -mfma.
//
// Why intrinsics and not the vector-extension tiles of kernels.cc: GCC 12 widens int8 with a byte
// shuffle, multiplies every chunk by its scale and spills the 4x3 accumulator tile, which made int8
// decode compute-bound at ~10 GMAC/s on two Zen 3 cores (measured with
// tests/backends/cpu_kernel_bench).
//
// Contract (MatVecRows in kernels.h, less the activation, which its caller applies after): rows
// [r0, r1) of y[T,N] = x[T,K] W^T + bias, W row-major [N,K]; int8 scales [N, ceil(K/32)]. Each
// (row, token) sum runs in one fixed order whatever the tile shape or T, so a row's output is
// bitwise independent of the batch. Thread safety: pure apart from y (and q, s of QuantizeX);
// callers split rows between threads.
//
// No standard-library template is used in the ISA files: an instantiation compiled with -mavx2
// there and without it elsewhere is one weak symbol, and the linker may keep the AVX2 copy for
// every caller. Their scratch memory comes from kernels.cc.
#pragma once

#include <cstdint>

#include "kernels.h"

namespace zaya::cpu::avx2 {

void MatVecBf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const float* x, int64_t t,
                int64_t n, const float* bias, float* y);
// int8 weights take x rounded to int16 with one scale per token (xq [T, K & ~15], xs [T]) from
// QuantizeX, and x itself for the columns past the last multiple of 16.
void QuantizeX(const float* x, int64_t t, int64_t k, int16_t* xq, float* xs);
void MatVecI8(const int8_t* w, const float* scales, int64_t r0, int64_t r1, int64_t k,
              const float* x, const int16_t* xq, const float* xs, int64_t t, int64_t n,
              const float* bias, float* y);

}  // namespace zaya::cpu::avx2
