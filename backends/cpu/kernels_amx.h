// bf16 and int8 matmuls on AMX (Intel's tile unit, `tdpbf16ps`, `tdpbsud`), for weights in the
// 16-row bf16 tile layout (kernels.h PackBf16Tiles) and the int8 block layout (PackI8Blocks).
// kernels.cc calls these only where MatVecIsa() is kAmx: the CPU has AMX-TILE, AMX-BF16 and
// AMX-INT8 besides the AVX-512 tiles' features, and the kernel granted this process the tile data
// (TileDataUnavailable). This file pair is compiled with those -m flags.
//
// Why: one `tdpbf16ps` multiplies a tile of up to 16 tokens x 32 columns by 32 columns x 16 rows,
// 8,192 multiply-adds, where `vdpbf16ps` does 32 (and runs ~0.5 a cycle on the Xeon of
// docs/performance.md, session 20). There, 4096 x 2048 from DRAM on two cores: 512 tokens 110 ->
// 745-785 GMAC/s, 16 tokens 101-103 -> 221-231. One token read ~7% slower (29 against 31 GB/s)
// until each chunk's weight lines were prefetched right before their tile loads (session 25: in
// the hours when the tile loads alone read 27-30 GB/s, that read 32-34, as vector loads did). The
// layout needs no repacking: one block's 16 column pairs (16 lines of 64 bytes: the 16 rows'
// pairs side by side) is AMX's B tile as it is.
//
// Sum order, and why decode goes through here too: a (row, token) sum runs over the 32-column
// chunks in order inside the tile unit (which sums each chunk's 32 products at a higher precision
// than one rounding per pair: it is not vdpbf16ps's order, nor bitwise its result), then over
// the last K % 32 columns with vdpbf16ps, then adds the bias. That order depends neither on how
// many tokens share the tile nor on the tile's shape (measured: a token's row in a 1-row tile
// equals it in a 16-row one, bit for bit), so a row's output is bitwise independent of the batch
// as long as every T runs here, which is why one token does too (backend.h's batch invariance).
//
// Thread safety: pure apart from the outputs; each call loads its tile configuration on the
// calling thread and releases the tiles before it returns. Callers split rows or tokens.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace zaya::cpu::amx {

// The 64-byte operand of ldtilecfg (palette 1): per tile, bytes per row and rows. Plain data, so
// that code built without the AMX flags (tests/backends/amx_gemm.cc's benchmark) can fill one too.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};

  void Set(int tile, int rows_, int colsb_) {
    rows[tile] = static_cast<uint8_t>(rows_);
    colsb[tile] = static_cast<uint16_t>(colsb_);
  }
  bool operator==(const TileConfig& o) const { return std::memcmp(this, &o, sizeof o) == 0; }
};

// Empty when this CPU has AMX-TILE, AMX-BF16 and AMX-INT8 and the kernel grants the process the
// tile data (arch_prctl ARCH_REQ_XCOMP_PERM, requested by this call, process-wide and once is
// enough); else why not, for the log.
std::string TileDataUnavailable();

// x [T,K] (K even) -> bf16 (round to nearest even, as avx512::PairX) by 32-column chunk: chunk c
// of token i at xa[(c T + i) 32 .. + 32) for c < K / 32, so that 16 tokens' chunk is one tile of
// 16 x 64 bytes at a stride of 64; then the K % 32 columns past the last chunk at
// xa[(K / 32) 32 T + i (K % 32)]. T K values. Tokens [i_begin, i_end) only; two ranges that each
// start at a multiple of 32 tokens write no cache line in common.
void ChunkX(const float* x, int64_t t, int64_t k, uint16_t* xa, int64_t i_begin, int64_t i_end);

// Rows [r0, r1), both multiples of 16 (or r1 = N, itself one), of y[T,N] = x[T,K] W^T + bias,
// W bf16 in the tile layout, x as ChunkX writes it. K even and at least 32.
void MatVecBf16Tiles(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const uint16_t* xa,
                     int64_t t, int64_t n, const float* bias, float* y);

// int8 weights in the 16-row block layout (kernels.h PackI8Blocks) through `tdpbsud`: a group's
// first and last 16 lines (16 rows x 4 columns each) are AMX's B tiles as stored, and up to 16
// tokens' x of the group's two 64-column chunks (avx512::QuantizeXChunks: signed bytes) the A
// tiles. Each (row, token) group sum is an exact integer, and the float steps after it are the
// AVX-512 tile's (kernels_avx512.cc I8Blocks: the offset, x's scale, an FMA by the row's scale,
// groups in order, then the bias), so every output is bitwise what avx512::MatVecI8Blocks gives
// for the same x: kernels.cc picks either by the token count, and a row's output stays
// independent of the batch. xa holds 15 x 64 bytes past its T K: a last tile of fewer than 16
// tokens loads 16 rows. Rows [r0, r1), multiples of 16 (or r1 = N, itself one).
//
// Why: with a scale per 128 columns one group is 2 tdpbsud (32,768 multiply-adds) and one float
// step per (row, token), where vpdpbusd needs 512 instructions; the VNNI tile is bound by
// arithmetic from ~9 tokens on (docs/performance.md, session 22). Up to 64 tokens the blocks go
// three at a time, three weight streams at once, which memory serves 10-12% faster at 9-16 tokens
// than one (session 24).
void MatVecI8Blocks(const uint8_t* w, int64_t r0, int64_t r1, int64_t k, const int8_t* xa,
                    const float* xs, const int32_t* xc, int64_t t, int64_t n, const float* bias,
                    float* y);

}  // namespace zaya::cpu::amx
