#include "kernels_avx512.h"

#include <immintrin.h>

#include <bit>

#include "tile_driver.h"

// Built with the AVX-512 flags for this file only; nothing here runs unless MatVecIsa() said so.
namespace zaya::cpu::avx512 {
namespace {

#define ZAYA_INLINE __attribute__((always_inline)) inline

// A T-token tile's far prefetch (tile_driver.h, FarFetch: measured on Zen 5).
template <int T>
constexpr FarFetch kFar = T == 1 ? FarFetch::kNone : FarFetch::kNta;

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
ZAYA_INLINE void TileBf16(const uint16_t* w, int64_t k, int64_t rs, const uint16_t* xb, int64_t k32,
                          const float* x, float out[R][T], int64_t ahead) {
  // ahead: bytes (see PrefetchWeights)
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < k32; j += 32) {  // 64 bytes of each row: one prefetch, one chunk
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) {
      PrefetchWeights<kFar<T>>(w + r * rs + j, ahead);
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
// each x load 4; and 3 rows x 8 tokens (24 accumulators too) where it takes fewer passes (7, 8 and
// 13-16 tokens: see TileRows). One Zen 5 core, 512 x 2048 from L2/L3, two interleaved rounds of
// cpu_kernel_bench, 4 x 6 alone against 3 x 8 alone (GMAC/s): 8 tokens 130-135 against 161-171,
// 16 tokens 158-160 against 165-170, 12 tokens 165-166 against 139-156 (so 12 keeps 6 + 6).
struct Bf16 : Bf16Weights {
  int64_t k32;
  const uint16_t* xb;
  const float* x;
  static constexpr int kRowsOne = 4, kRowsMany = 4, kTokens = 6, kRowsWide = 3, kTokensWide = 8;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T], int64_t ahead) const {
    TileBf16<R, T>(w + row0 * k, k, m * k, xb + i0 * k32, k32, x + i0 * k, out, 2 * ahead * k);
  }
};

// bf16 weights in the tile layout (kernels.h PackBf16Tiles): a block of 16 rows holds, per column
// pair, the 16 rows' pairs side by side, so one 64-byte load is 16 rows x 2 columns and a
// broadcast x pair multiplies all 16 (vdpbf16ps with a 32-bit broadcast). Each accumulator lane is
// then one (row, token) sum: no horizontal sums, 16 outputs stored at once, and x (4 bytes per
// token and pair) is read from L1 instead of the row-major tile's 64 bytes per token and 32
// columns, whose x for 6-16 tokens (24-64 KiB at K = 2048) the streaming weights kept evicting.
// Session 12 (docs/performance.md; this tile in a throwaway harness against cpu_kernel_bench on
// the row-major one), one Zen 5 core in cache, GMAC/s: 4 tokens 141 -> 215, 16 tokens 177 -> 252
// (vdpbf16ps's peak is ~253); two cores from DRAM, 4096 x 2048: 4 tokens 41 -> 48 GB/s, 6 tokens
// 41 -> 47, 1 token 48-49 either way. The 8B model at batch 16: ~70% -> ~76% of local.
// What every block layout's tiles share: the outputs, `lines`, the 64-byte lines of weights per
// block, and `block_bytes`, the bytes from one block to the next (the int8 layout's scales too).
struct BlockOut {
  int64_t lines, block_bytes;
  int64_t t, n;
  const float* bias;
  float* y;

  // acc's 16 lanes are rows row .. row + 15 of token i.
  ZAYA_INLINE void Store(int64_t row, int64_t i, __m512 acc) const {
    _mm512_storeu_ps(
        y + i * n + row,
        _mm512_add_ps(acc, bias != nullptr ? _mm512_loadu_ps(bias + row) : _mm512_setzero_ps()));
  }
};

// How far ahead of itself the first pass of a group fetches each stream's line into L1: 2 KiB
// where the row-major tiles take kStreamAheadBytes (1 KiB). Session 23's Xeon, weights on huge
// pages, int8 4096 x 2048 from DRAM, two threads (cpu_kernel_bench, 1, 2 and 3 KiB in turn, three
// rounds, median of 5): one token 31.4-33.1 -> 34.5-34.7 GB/s, 4 tokens 30.6-31.1 -> 30.4-32.5,
// 2 and 8 tokens alike; bf16 through this file's tile (ZAYA_CPU_ISA=avx512), 1 token 32.8-33.4
// -> 33.1-34.0, 4 tokens 31.9-32.6 -> 33.4-33.8, 8 tokens 23.1-23.3 -> 23.3-23.8; the 8B model at int8, alternated processes, of local: batch 1
// 73.6%, 79.3% -> 87.5%, 87.6% (21.8-22.3 -> 23.0-23.2 tok/s), batch 16 60.5%, 65.2% -> 69.7%,
// 69.9% (122-126 -> 129-131 tok/s).
constexpr int64_t kBlockAheadBytes = 2048;

// What a token pass prefetches (BlockRows): the first pass of a group fetches each stream's line
// kBlockAheadBytes on into L1; with `next` (bytes on to the same line of the next group, 0 for
// none), pass `pass` of `passes` also fetches into L2 the next group's lines of every passes-th
// column pair, so that DRAM streams through all the passes of a group. Until session 12's head
// measurements the later passes fetched all of the next group and the first none: DRAM then
// idled through each first pass, which found its group in L2. With kFar a pass also fetches each
// line kFarBytes on with prefetchnta (I8Blocks::kFarBytes says where), a template argument: a
// run-time test of it per line cost the 16-token tile 15% of its rate in cache (session 14); and
// with kL2Bytes != 0, the line kL2Bytes on into L2 (the one-block tiles' single pass: int8 at 9-16
// tokens, bf16 at 10-16).
template <bool kFar, int64_t kFarBytes = 0, int64_t kL2Bytes = 0>
struct BlockFetch {
  int64_t next = 0, pass = 0, passes = 1;

  // Line p of a stream (its 64-byte line from the block's start, so that each pass takes every
  // passes-th line of memory: counting the int8 layout's weight lines only, the 16-token head
  // read 6% slower, session 14) at `line`.
  ZAYA_INLINE void Line(const char* line, int64_t p) const {
    if (pass == 0) _mm_prefetch(line + kBlockAheadBytes, _MM_HINT_T0);
    if (next != 0 && p % passes == pass) _mm_prefetch(line + next, _MM_HINT_T1);
    if constexpr (kFar) _mm_prefetch(line + kFarBytes, _MM_HINT_NTA);
    if constexpr (kL2Bytes != 0) _mm_prefetch(line + kL2Bytes, _MM_HINT_T1);
  }
};

struct Bf16Blocks : BlockOut {
  // Session 14 measured the far fetch (BlockFetch) with this tile too: no gain at 1-6 tokens.
  static constexpr int64_t kFarBytes = 0;
  const uint16_t* w;  // [N / 16][K / 2][16][2]; lines = K / 2, block_bytes = 64 lines
  // x by token pass (PairX): the pass from token i0, of T tokens, at xt + i0 K / 2 as [K / 2][T].
  const uint32_t* xt;

  // Blocks b .. b + R - 1 (adjacent: R streams one block apart) x tokens i0 .. i0 + T - 1.
  template <int R, int T, class F>
  ZAYA_INLINE void Tile(int64_t b, int64_t i0, const F& f) const {
    const int64_t bs = lines * 32;  // uint16 per block
    const uint16_t* wb = w + b * bs;
    const uint32_t* x = xt + i0 * lines;
    __m512 acc[R][T];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int i = 0; i < T; ++i) acc[r][i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < lines; ++p) {
      __m512bh wv[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const char* line = reinterpret_cast<const char*>(wb + r * bs + p * 32);
        f.Line(line, p);
        wv[r] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(line));
      }
#pragma GCC unroll 16
      for (int i = 0; i < T; ++i) {
        const __m512bh xv =
            reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(x[p * T + i])));
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv[r], xv);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int i = 0; i < T; ++i) Store((b + r) * kBf16TileRows, i0 + i, acc[r][i]);
  }
};

// int8 weights in the block layout (kernels.h PackI8Blocks): one 64-byte load is 16 rows x 4
// columns as unsigned bytes (w + 128), and vpdpbusd multiplies it by a broadcast 4 signed bytes
// of x per token, so each int32 lane sums one (row, token)'s products: 32 instructions per
// 128-column group (2048 products), then one conversion, one multiply by x's group scale and one
// FMA by the 16 rows' scales (the line after the group's 32). Those three float steps per 8
// vpdpbusd, with the scales per 32 columns of ABI 1, held a 16-token tile to 255 GMAC/s on one
// Xeon core in cache; per 128 columns they come once per 32 (docs/performance.md, session 22).
// The offset comes out per token, not per row: sum (w + 128) x = sum w x + 128 sum x, and
// -128 sum x of each group (QuantizeXQuads) starts the lane's integer sum. The row-major tiles (I8
// below) spend 4 vpdpbusd and 4 more instructions per 256 products and row, plus a correction per
// row and a horizontal sum per (row, token), and read x as 4 vectors per token and group: session
// 13 (docs/performance.md) has what this gained.
//
// Per (row, token): acc += (float(integer sum of group q) * x scale) * w scale over q in order,
// in one lane; the integer sums are exact (|sum| < 128 x 255 x 127 + 128 x 128 x 127 < 2^24), so
// the order of the float steps, fixed, is the only rounding, and a row's output is bitwise
// independent of the batch.
struct I8Blocks : BlockOut {
  // A single pass of 2-16 tokens also fetches each line 2 KiB on with prefetchnta (BlockFetch):
  // two Zen 5 cores from DRAM (cpu_kernel_bench, 4096 x 2048, interleaved in one process), 2-8
  // tokens +1-5% on top of the scales in the stream; one token lost 2-4% with it. Only on AMD
  // CPUs (kernels.h FarNtaFetch): session 20's Intel Xeon read 2-8 tokens at 9.6-13.4 GB/s with it
  // and 26.9-30.5 without.
  static constexpr int64_t kFarBytes = 2048;
  // Lines of one group's weights; its scales' line follows them.
  static constexpr int64_t kLines = kI8Group / 4;
  const uint8_t* w;  // per block, per group q: 32 lines [32][16][4], then 16 f32 scales
  // x by token pass (QuantizeXQuads): the pass from token i0, of T tokens, at x + i0 K / 4 as
  // [K / 4][T], and its scales and offsets at xs + i0 K / 128 and xc + i0 K / 128 as [K / 128][T].
  const uint32_t* x;
  const float* xs;
  const int32_t* xc;

  template <int R, int T, class F>
  ZAYA_INLINE void Tile(int64_t b, int64_t i0, const F& f) const {
    const int64_t kq = lines / kLines;  // column groups
    const uint8_t* wb = w + b * block_bytes;
    const uint32_t* xp = x + i0 * lines;
    const float* xsp = xs + i0 * kq;
    const int32_t* xcp = xc + i0 * kq;
    // The f32 sums live in memory (L1): each is touched once per 8 vpdpbusd, and the registers
    // go to the integer sums, so a pass can take more tokens.
    alignas(64) float acc[R][T][16];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int i = 0; i < T; ++i) _mm512_store_ps(acc[r][i], _mm512_setzero_ps());
    for (int64_t q = 0; q < kq; ++q) {
      __m512i s[R][T];
#pragma GCC unroll 16
      for (int i = 0; i < T; ++i) {
        const __m512i c = _mm512_set1_epi32(xcp[q * T + i]);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) s[r][i] = c;
      }
      // The group's 32 lines as 4 x 8 unrolled: unrolled whole, the 16-token tile's code outgrew
      // the uop cache (289 against 296 GMAC/s on one Xeon core in cache), and `unroll 8` over
      // all 32 left the loop rolled, with 32 register copies a line (225; session 22).
      for (int c0 = 0; c0 < kLines; c0 += 8) {
#pragma GCC unroll 8
        for (int c = c0; c < c0 + 8; ++c) {
          const int64_t p = q * kLines + c;
          __m512i wv[R];
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            const char* line =
                reinterpret_cast<const char*>(wb + r * block_bytes + q * kI8GroupBytes + c * 64);
            f.Line(line, q * (kLines + 1) + c);
            wv[r] = _mm512_loadu_si512(line);
          }
#pragma GCC unroll 16
          for (int i = 0; i < T; ++i) {
            const __m512i xv = _mm512_set1_epi32(static_cast<int>(xp[p * T + i]));
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) s[r][i] = _mm512_dpbusd_epi32(s[r][i], wv[r], xv);
          }
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const char* sline =
            reinterpret_cast<const char*>(wb + r * block_bytes + q * kI8GroupBytes + kLines * 64);
        f.Line(sline, q * (kLines + 1) + kLines);
        const __m512 wsv = _mm512_loadu_ps(sline);
#pragma GCC unroll 16
        for (int i = 0; i < T; ++i) {
          const __m512 v =
              _mm512_mul_ps(_mm512_cvtepi32_ps(s[r][i]), _mm512_set1_ps(xsp[q * T + i]));
          _mm512_store_ps(acc[r][i], _mm512_fmadd_ps(v, wsv, _mm512_load_ps(acc[r][i])));
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int i = 0; i < T; ++i) Store((b + r) * kI8TileRows, i0 + i, _mm512_load_ps(acc[r][i]));
  }
};

// The last `rest` (<= T) tokens from i0 on, as one tile of exactly that many.
template <int R, int T, class A, class F>
ZAYA_INLINE void BlockRest(const A& a, int64_t b, int64_t i0, int64_t rest, const F& f) {
  if constexpr (T >= 1) {
    if (rest == T) {
      a.template Tile<R, T>(b, i0, f);
    } else {
      BlockRest<R, T - 1>(a, b, i0, rest, f);
    }
  }
}

// Blocks [b0, b1) in groups of R, each group passed over once per TT tokens (tile_driver.h's
// chunks: the later passes read the group from L2), the next group's lines fetched across the
// passes (BlockFetch), or A::kFarBytes on where one pass of several tokens takes the group; the
// blocks past the last whole group in smaller groups (one at a time until session 14: a 16-token
// matmul of 17 blocks, 8 and 9 a thread, ran 6-27% slower).
template <int R, int TT, class A, bool kFar, int64_t kL2Bytes>
void BlockRowsFetching(const A& a, int64_t b0, int64_t b1) {
  using Fetch = BlockFetch<kFar, A::kFarBytes, kL2Bytes>;
  const int64_t passes = (a.t + TT - 1) / TT, group_bytes = R * a.block_bytes;
  int64_t b = b0;
  for (; b + R <= b1; b += R) {
    const int64_t next = passes > 1 && b + 2 * R <= b1 ? group_bytes : 0;
    for (int64_t p = 0; p < passes; ++p) {
      const int64_t i = p * TT;
      BlockRest<R, TT>(a, b, i, a.t - i < TT ? a.t - i : TT, Fetch{next, p, passes});
    }
  }
  // One block at a time, a tile spends each x broadcast on one block only.
  if constexpr (R > 1) {
    if (b < b1) BlockRowsFetching<R - 1, TT, A, kFar, kL2Bytes>(a, b, b1);
  }
}

// kL2Bytes: where a single pass also fetches each line into L2 (BlockFetch); not in the passes
// of more tokens than TT, which fetch the next group into L2 across their passes instead.
template <int R, int TT, class A, int64_t kL2Bytes = 0>
void BlockRows(const A& a, int64_t b0, int64_t b1) {
  constexpr bool kFar = A::kFarBytes != 0 && TT > 1;
  if (a.t <= TT && kFar && !kFarNtaFetch) {
    return BlockRowsFetching<R, TT, A, false, kL2Bytes>(a, b0, b1);
  }
  if (a.t <= TT) return BlockRowsFetching<R, TT, A, kFar, kL2Bytes>(a, b0, b1);
  BlockRowsFetching<R, TT, A, false, 0>(a, b0, b1);
}

// Where the one-block tiles of 9-16 tokens (MatVecBf16Tiles, MatVecI8Blocks) fetch each line into
// L2: without it one int8 block x 16 read slower from DRAM than two passes of 3 x 8 (488 against
// 558 GMAC/s); 8-16 KiB measured alike, 6 KiB less (session 15).
constexpr int64_t kOneBlockL2Bytes = 8192;

// int8 weights with VNNI's byte dot product, vpdpbusd: 64 products per instruction, twice
// vpdpwssd's 32. Its operands are unsigned x signed bytes, so x is rounded to 8 bits, with one
// scale per 32-column block like the weights (backend.h allows it; a scale per token would let one
// large activation flatten the rest of the row), and stored offset by 128 as unsigned bytes:
// sum (xq + 128) w = sum xq w + 128 sum w, and the second term, per row and block, comes from the
// same weights with a constant 128 operand once per row and serves every token of the tile.
//
// Each block has its own pair of scales, so the integer sums must become floats once per block,
// row and token; what decides the speed is how many products an int32 lane holds by then. Here a
// 256-column group (8 blocks) fills 4 zmm, two 32-bit lanes per block in each, so each lane sums
// 16 products in 4 instructions before one conversion, one multiply of the weights' and x's scale
// vectors, and one FMA. The weights of a group are rearranged for that once per row (4 vpermt2q,
// 4 vshufi64x2) and then serve every token; x is stored in the same order by QuantizeX8.
//
// Per (row, token): acc += float(int sums of group g) * (w scales * x scales) over the 256-column
// groups, then the same per 32-column block past the last group (8 lanes of 4 products), HSum,
// then the columns past the last multiple of 32 in float, in order. The integer sums are exact
// (|sum| < 2^24), so the only rounding is in the float steps, whose order is fixed.
struct QuantX8 {
  const uint8_t* q;  // [T, K32], xq + 128, 256-column groups in tile order (see QuantizeX8)
  const float* s;    // [T, ss]: per group 16 lanes (block L's scale in lanes 2L, 2L + 1), then
                     // one per block past the last group
  const float* x;    // [T, K] for the tail
  int64_t k32, ss;
};

// The 4 vectors of one row and 256-column group: vector c holds, in its qword L (lanes 2L, 2L + 1),
// the 8 bytes 8c .. 8c + 7 of block L.
ZAYA_INLINE void LoadGroupI8(const int8_t* w, __m512i out[4]) {
  // Input vector z holds blocks 2z (qwords 0-3) and 2z + 1 (qwords 4-7).
  const __m512i a0 = _mm512_loadu_si512(w), a1 = _mm512_loadu_si512(w + 64);
  const __m512i a2 = _mm512_loadu_si512(w + 128), a3 = _mm512_loadu_si512(w + 192);
  // Chunks 0, 1 (lo) and 2, 3 (hi) of the four blocks of two input vectors.
  const __m512i lo = _mm512_set_epi64(13, 9, 5, 1, 12, 8, 4, 0);
  const __m512i hi = _mm512_set_epi64(15, 11, 7, 3, 14, 10, 6, 2);
  const __m512i b01lo = _mm512_permutex2var_epi64(a0, lo, a1);
  const __m512i b01hi = _mm512_permutex2var_epi64(a0, hi, a1);
  const __m512i b23lo = _mm512_permutex2var_epi64(a2, lo, a3);
  const __m512i b23hi = _mm512_permutex2var_epi64(a2, hi, a3);
  out[0] = _mm512_shuffle_i64x2(b01lo, b23lo, 0x44);  // 128-bit lanes 0, 1 of each
  out[1] = _mm512_shuffle_i64x2(b01lo, b23lo, 0xee);  // lanes 2, 3
  out[2] = _mm512_shuffle_i64x2(b01hi, b23hi, 0x44);
  out[3] = _mm512_shuffle_i64x2(b01hi, b23hi, 0xee);
}

// Row r of the tile starts at w + r * m * k, its scales at scales + r * m * nb. kTiles: the weights
// are in the tile layout (kernels.h PackI8Tiles), i.e. LoadGroupI8's order already.
template <int R, int T, bool kTiles>
ZAYA_INLINE void TileI8(const int8_t* w, const float* scales, int64_t nb, int64_t k, int64_t m,
                        const QuantX8& qx, int64_t i0, float out[R][T], int64_t ahead) {
  // ahead: rows (see PrefetchWeights)
  const int64_t rs = m * k, srs = m * nb, k32 = qx.k32, k256 = k32 & ~int64_t{255};
  const uint8_t* xq = qx.q + i0 * k32;
  const float* xs = qx.s + i0 * qx.ss;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) acc[r][i] = _mm512_setzero_ps();
  const __m512i zero = _mm512_setzero_si512(), offset = _mm512_set1_epi8(-128);  // 0x80: 128 as u8
  // Block L's lanes 2L, 2L + 1 take the scale of the weights' group that holds it, one of the
  // 256 / kI8Group scales loaded per 256 columns.
  static_assert(256 % kI8Group == 0, "a 256-column group holds whole scale groups");
  constexpr int kBlocksShift = std::countr_zero(static_cast<unsigned>(kI8Group / 32));
  constexpr __mmask16 kGroupScales = (1u << (256 / kI8Group)) - 1;
  const __m512i lanes_of_block = _mm512_srli_epi32(
      _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0), kBlocksShift);
  for (int64_t j = 0; j < k256; j += 256) {
    __m512i wv[R][4], neg[R];
    __m512 sv[R];
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < 4; ++c) PrefetchWeights<kFar<T>>(w + r * rs + j + 64 * c, ahead * k);
      PrefetchScales(scales + r * srs, j, 4 * ahead * nb);
      if constexpr (kTiles) {
        for (int c = 0; c < 4; ++c) wv[r][c] = _mm512_loadu_si512(w + r * rs + j + 64 * c);
      } else {
        LoadGroupI8(w + r * rs + j, wv[r]);
      }
      __m512i s = _mm512_dpbusd_epi32(zero, offset, wv[r][0]);
      s = _mm512_dpbusd_epi32(s, offset, wv[r][1]);
      s = _mm512_dpbusd_epi32(s, offset, wv[r][2]);
      neg[r] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(s, offset, wv[r][3]));
      sv[r] = _mm512_permutexvar_ps(
          lanes_of_block, _mm512_maskz_loadu_ps(kGroupScales, scales + r * srs + j / kI8Group));
    }
    for (int i = 0; i < T; ++i) {
      const uint8_t* xi = xq + i * k32 + j;
      const __m512i x0 = _mm512_loadu_si512(xi), x1 = _mm512_loadu_si512(xi + 64);
      const __m512i x2 = _mm512_loadu_si512(xi + 128), x3 = _mm512_loadu_si512(xi + 192);
      const __m512 sx = _mm512_loadu_ps(xs + i * qx.ss + (j >> 4));
      for (int r = 0; r < R; ++r) {
        // Two chains of two joined by an add, for the latency (integer sums: no bit changes).
        const __m512i s01 =
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(neg[r], x0, wv[r][0]), x1, wv[r][1]);
        const __m512i s23 =
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, x2, wv[r][2]), x3, wv[r][3]);
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s01, s23)),
                                    _mm512_mul_ps(sv[r], sx), acc[r][i]);
      }
    }
  }
  // Whole blocks past the last group: 32 bytes in the low half of a zmm, zeros above.
  for (int64_t j = k256; j < k32; j += 32) {
    const int64_t block = (j - k256) >> 5;
    for (int r = 0; r < R; ++r) {
      const __m512i w0 = _mm512_maskz_loadu_epi8(0xffffffffULL, w + r * rs + j);
      const __m512i neg0 = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, offset, w0));
      const float ws = scales[r * srs + j / kI8Group];
      for (int i = 0; i < T; ++i) {
        const __m512i isum =
            _mm512_dpbusd_epi32(neg0, _mm512_maskz_loadu_epi8(0xffffffffULL, xq + i * k32 + j), w0);
        const __m512 s = _mm512_set1_ps(ws * xs[i * qx.ss + (k256 >> 4) + block]);
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), s, acc[r][i]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < T; ++i) out[r][i] = HSum(acc[r][i]);
  AddTailI8<R, T>(w, scales, rs, srs, qx.x + i0 * k, k, k32, out);
}

// Tile shapes: one token, 4 rows (bound by memory); more tokens, 2 rows x 6 tokens: x's 4 vectors
// for a group load once per token, and the rows' 8 weight vectors, 2 corrections and 2 scale
// vectors stay in registers with the 12 accumulators. Measured against 1 x 8, 2 x 4 and 3 x 4
// (and 1 x 8 from 8 tokens on, 2 x 6 below): 1 x 8 led the tile alone at 8-16 tokens (153-177
// against 127-151 GMAC/s) but not the 8B model at batch 16 (56-82 against 77-87 tok/s, two
// interleaved rounds), where most experts get 2-6 tokens. So 1 x 8 is the wide tile, taken only
// where it needs fewer passes than 2 x 6 (7, 8 and 13-16 tokens; TileRows): it rearranges each
// row's group once for 8 tokens instead of 6 or fewer. One Zen 5 core, 512 x 2048 from L2/L3,
// two interleaved rounds (GMAC/s): 7 tokens 121 -> 166, 8 tokens 131 -> 169-173, 16 tokens 143
// -> 165-170, 4 and 12 tokens unchanged; 1 x 12 and 1 x 16 as the wide tile did worse at 8 or 16.
// The 8B model's batch-16 step did not measurably move (docs/performance.md, session 8).
//
// Weights in the tile layout (session 9) skip the shuffles, and the best several-token tile moves
// from 2 x 6 to 2 x 4: one Zen 5 core, 512 x 2048 from L2/L3, two interleaved rounds, GMAC/s,
// row-major with 2 x 6 + 1 x 8 against the tile layout with 2 x 4 + 1 x 8: 1 token 50 -> 64-67,
// 2 tokens 101-103 -> 102-107, 4 tokens 141-144 -> 155-160, 6 tokens 140-152 -> 179-190, 8
// tokens 173-175 -> 198, 16 tokens 174-177 -> 197-204. With the tile layout 2 x 6 lost at 2-6
// tokens, 2 x 3, 2 x 2, 3 x 4 and 1 x 8 alone lost at 2-4.
template <bool kTiles>
struct I8 : I8Weights {
  QuantX8 qx;
  static constexpr int kRowsOne = 4, kRowsMany = 2, kTokens = kTiles ? 4 : 6, kRowsWide = 1,
                       kTokensWide = 8;
  template <int R, int T>
  ZAYA_INLINE void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T], int64_t ahead) const {
    TileI8<R, T, kTiles>(w + row0 * k, scales + row0 * nb, nb, k, m, qx, i0, out, ahead);
  }
};

// x[0, N) rounded to 8 bits with one scale, max |x| / 127, to nearest even: the values as int32,
// columns 16v .. 16v + 15 in q[v], |q| <= 127. Every int8 form of x rounds through this: per 32
// columns for the row-major tiles (QuantizeX8), per kI8Group for the block layout's VNNI and AMX
// tiles (RoundGroup8).
template <int N>
struct Block8 {
  __m512i q[N / 16];
  float scale;
};
template <int N>
ZAYA_INLINE Block8<N> RoundBlock8(const float* x) {
  Block8<N> r;
  __m512 m = _mm512_setzero_ps();
  for (int v = 0; v < N / 16; ++v) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * v)));
  const float amax = _mm512_reduce_max_ps(m);
  const __m512 inv = _mm512_set1_ps(amax > 0.f ? 127.f / amax : 0.f);
  for (int v = 0; v < N / 16; ++v)
    r.q[v] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * v), inv));
  r.scale = amax / 127.f;
  return r;
}

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
                const uint16_t* xb, int64_t t, int64_t n, const float* bias, float* y) {
  TileRows(Bf16{{w, k}, k & ~int64_t{31}, xb, x}, r0, r1, t, n, bias, y);
}

int64_t Bf16BlockPassTokens(int64_t t) {
  if (t == 1) return 1;
  if (t > 9 && t <= 16) return 16;
  return (t + 7) / 8 < (t + 5) / 6 ? 8 : 6;
}

void PairX(const float* x, int64_t t, int64_t k, uint32_t* xt, int64_t i_begin, int64_t i_end) {
  const int64_t tt = Bf16BlockPassTokens(t);
  for (int64_t i = i_begin; i < i_end; ++i) {
    const float* xi = x + i * k;
    // Token i's place in its pass: the pass from i0, of w tokens.
    const int64_t i0 = i - i % tt, w = t - i0 < tt ? t - i0 : tt, at = i - i0;
    uint32_t* xp = xt + i0 * (k / 2);
    for (int64_t j = 0; j < k; j += 32) {
      // k is even, so the last piece holds whole pairs; the lanes past it load zeros.
      const int64_t left = k - j < 32 ? k - j : 32;
      const __mmask16 lo = left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1);
      const __mmask16 hi = left >= 32  ? 0xffff
                           : left > 16 ? static_cast<__mmask16>((1u << (left - 16)) - 1)
                                       : 0;
      const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, xi + j + 16),
                                             _mm512_maskz_loadu_ps(lo, xi + j));
      alignas(64) uint32_t pairs[16];
      _mm512_store_si512(pairs, reinterpret_cast<const __m512i&>(b));
      for (int64_t q = 0; q < left / 2; ++q) xp[(j / 2 + q) * w + at] = pairs[q];
    }
  }
}

// Tile shapes, as for the row-major tiles (32 zmm: accumulators + R weight vectors + one x
// broadcast): one token 4 blocks (bound by memory); 2-6 tokens 4 blocks x T (24 accumulators at
// 6); 10-16 tokens one block x T in one pass with each line also fetched kOneBlockL2Bytes on into
// L2; otherwise 3 blocks x 8 where that takes fewer passes than 4 x 6 (7-9 tokens, and prefill).
// One Zen 5 core in cache (512 x 2048, GMAC/s, session 12): 4 x 4 215, 4 x 6 257, 3 x 8 at 8 and
// 16 tokens 250-252. One block x 16 against two passes of 3 x 8 (session 15, in one process): two
// cores from DRAM 322 -> 375-377 GMAC/s, one core in cache 207 -> 252; 12 tokens (3 x 8 and 3 x 4
// before) 252 -> 281 from DRAM. In alternated processes, 4096 x 2048 from DRAM: 10-13 tokens
// +11-17%, the head (262272 x 2048) at 16 tokens 316-331 -> 375-427; 9 tokens -6% (kept as was).
void MatVecBf16Tiles(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const uint32_t* xt,
                     int64_t t, int64_t n, const float* bias, float* y) {
  const Bf16Blocks a{{k / 2, k / 2 * 64, t, n, bias, y}, w, xt};
  const int64_t b0 = r0 / kBf16TileRows, b1 = r1 / kBf16TileRows;
  switch (Bf16BlockPassTokens(t)) {
    case 1:
      return BlockRows<4, 1>(a, b0, b1);
    case 8:
      return BlockRows<3, 8>(a, b0, b1);
    case 16:
      return BlockRows<1, 16, Bf16Blocks, kOneBlockL2Bytes>(a, b0, b1);
    default:
      return BlockRows<4, 6>(a, b0, b1);
  }
}

int64_t X8ScaleStride(int64_t k) {
  const int64_t k32 = k & ~int64_t{31}, k256 = k32 & ~int64_t{255};
  return k256 / 16 + (k32 - k256) / 32;
}

void QuantizeX8(const float* x, int64_t t, int64_t k, uint8_t* xq, float* xs) {
  const int64_t k32 = k & ~int64_t{31}, k256 = k32 & ~int64_t{255}, ss = X8ScaleStride(k);
  for (int64_t i = 0; i < t; ++i) {
    const float* xi = x + i * k;
    uint8_t* qi = xq + i * k32;
    float* si = xs + i * ss;
    for (int64_t j = 0; j < k32; j += 32) {
      const Block8<32> r = RoundBlock8<32>(xi + j);
      const float scale = r.scale;
      // Narrowed with saturation (|q| <= 127 anyway), then + 128 as a byte.
      const __m128i q0 = _mm_xor_si128(_mm512_cvtsepi32_epi8(r.q[0]), _mm_set1_epi8(-128));
      const __m128i q1 = _mm_xor_si128(_mm512_cvtsepi32_epi8(r.q[1]), _mm_set1_epi8(-128));
      if (j < k256) {
        // Block L of its group: bytes 8c .. 8c + 7 go to qword L of the group's vector c, and the
        // scale to lanes 2L, 2L + 1 (the weights' order after LoadGroupI8).
        const int64_t group = j & ~int64_t{255}, block = (j - group) >> 5;
        uint8_t* g = qi + group;
        _mm_storel_epi64(reinterpret_cast<__m128i*>(g + 8 * block), q0);
        _mm_storeh_pd(reinterpret_cast<double*>(g + 64 + 8 * block), _mm_castsi128_pd(q0));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(g + 128 + 8 * block), q1);
        _mm_storeh_pd(reinterpret_cast<double*>(g + 192 + 8 * block), _mm_castsi128_pd(q1));
        si[group / 16 + 2 * block] = scale;
        si[group / 16 + 2 * block + 1] = scale;
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qi + j), q0);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qi + j + 16), q1);
        si[k256 / 16 + ((j - k256) >> 5)] = scale;
      }
    }
  }
}

void MatVecI8(const int8_t* w, bool tile_layout, const float* scales, int64_t r0, int64_t r1,
              int64_t k, const float* x, const uint8_t* xq, const float* xs, int64_t t, int64_t n,
              const float* bias, float* y) {
  const I8Weights iw{w, scales, k, zaya_i8_scales(k)};
  const QuantX8 qx{xq, xs, x, k & ~int64_t{31}, X8ScaleStride(k)};
  if (tile_layout) return TileRows(I8<true>{iw, qx}, r0, r1, t, n, bias, y);
  TileRows(I8<false>{iw, qx}, r0, r1, t, n, bias, y);
}

int64_t I8BlockPassTokens(int64_t t) {
  if (t == 1) return 1;
  if (t <= 6) return 6;
  if (t <= 8) return 8;
  return 16;
}

namespace {

// One group of x (kI8Group values at g) as both block-layout kernels take it (RoundBlock8): the
// bytes, the scale, and -128 x the bytes' sum (the layout's offset, I8Blocks). One function for
// both, so that their integer sums are the same.
struct Group8 {
  alignas(64) int8_t q[kI8Group];
  float scale;
  int32_t offset;
};
ZAYA_INLINE void RoundGroup8(const float* g, Group8* out) {
  const Block8<kI8Group> r = RoundBlock8<kI8Group>(g);
  __m512i sum = _mm512_setzero_si512();
  for (int v = 0; v < kI8Group / 16; ++v) {
    sum = _mm512_add_epi32(sum, r.q[v]);
    _mm_store_si128(reinterpret_cast<__m128i*>(out->q + 16 * v), _mm512_cvtsepi32_epi8(r.q[v]));
  }
  out->scale = r.scale;
  out->offset = -128 * _mm512_reduce_add_epi32(sum);
}

}  // namespace

void QuantizeXQuads(const float* x, int64_t t, int64_t k, uint32_t* xq, float* xs, int32_t* xc,
                    int64_t i_begin, int64_t i_end) {
  const int64_t tt = I8BlockPassTokens(t);
  constexpr int kQuads = kI8Group / 4;
  for (int64_t i = i_begin; i < i_end; ++i) {
    const float* xi = x + i * k;
    // Token i's place in its pass: the pass from i0, of w tokens.
    const int64_t i0 = i - i % tt, w = t - i0 < tt ? t - i0 : tt, at = i - i0;
    uint32_t* xqp = xq + i0 * (k / 4);
    float* xsp = xs + i0 * (k / kI8Group);
    int32_t* xcp = xc + i0 * (k / kI8Group);
    for (int64_t q = 0; q < k / kI8Group; ++q) {
      Group8 g;
      RoundGroup8(xi + kI8Group * q, &g);
      xsp[q * w + at] = g.scale;
      xcp[q * w + at] = g.offset;
      for (int64_t c = 0; c < kQuads; ++c)
        __builtin_memcpy(&xqp[(kQuads * q + c) * w + at], g.q + 4 * c, 4);
    }
  }
}

void QuantizeXChunks(const float* x, int64_t t, int64_t k, int8_t* xa, float* xs, int32_t* xc,
                     int64_t i_begin, int64_t i_end) {
  constexpr int64_t kChunks = kI8Group / 64;
  const int64_t groups = k / kI8Group;
  for (int64_t i = i_begin; i < i_end; ++i) {
    for (int64_t q = 0; q < groups; ++q) {
      Group8 g;
      RoundGroup8(x + i * k + kI8Group * q, &g);
      xs[q * t + i] = g.scale;
      xc[q * t + i] = g.offset;
      for (int64_t c = 0; c < kChunks; ++c)
        _mm512_storeu_si512(xa + ((kChunks * q + c) * t + i) * 64, _mm512_load_si512(g.q + 64 * c));
    }
  }
}

// Tile shapes (I8BlockPassTokens; 32 zmm: R x T integer sums, R weight vectors, one x broadcast,
// one scale vector; the f32 sums stay in L1): one token 4 blocks (bound by memory); 2-6 tokens 3
// blocks x T; 7-8 tokens 3 blocks x 8; from 9 on one block x 16, in one pass up to 16 tokens
// (with the L2 fetch, BlockRows) and in passes of 16 beyond.
//
// Session 13 measured one Zen 5 core in cache, 512 x 2048, GMAC/s: 2 x 6 at 6 tokens 335, 3 x 8
// at 8 330, 2 x 12 at 12 329, at 16 tokens 3 x 8 (two passes) 309, 2 x 12 288. Session 15 measured
// the same tiles from DRAM on two cores, variants in turn in one process (docs/performance.md):
// - 2-6 tokens stream experts, where 3 blocks beat 2 (4096 x 2048; 4 tokens 61-67 -> 68-74 GB/s,
//   2 tokens 63-74 -> 72-77 where one token read ~75; level where it read ~50), though in cache
//   3 x 6 does 9% less than 2 x 6 (309-315 against 341-348 GMAC/s at 6 tokens);
// - 9-16 tokens (the head and the dense matmuls at batch 16, the busier experts): one block of T
//   in one pass, with each line also fetched 8 KiB on into L2, beat session 13's tiles: 16 tokens
//   (two passes of 3 x 8 before) 498-606 -> 609-695 GMAC/s, 12 tokens (2 x 12) 455-476 -> 507-625;
//   in cache, one core, 16 tokens 336-343 -> 362-387. At 8 tokens it won three rounds of four in
//   one process but lost 4% to 3 x 8 in alternated processes, so 7-8 tokens keep 3 x 8. 24
//   tokens as one block spill (316 against 596 GMAC/s);
// - prompts in passes of one block x 16 instead of 2 x 12: 512 tokens, 2048 x 2048, 641-664 ->
//   669-692 GMAC/s (alternated processes).
void MatVecI8Blocks(const uint8_t* w, int64_t r0, int64_t r1, int64_t k, const uint32_t* xq,
                    const float* xs, const int32_t* xc, int64_t t, int64_t n, const float* bias,
                    float* y) {
  const I8Blocks a{{k / 4, I8BlockBytes(k), t, n, bias, y}, w, xq, xs, xc};
  const int64_t b0 = r0 / kI8TileRows, b1 = r1 / kI8TileRows;
  switch (I8BlockPassTokens(t)) {
    case 1:
      return BlockRows<4, 1>(a, b0, b1);
    case 6:
      return BlockRows<3, 6>(a, b0, b1);
    case 8:
      return BlockRows<3, 8>(a, b0, b1);
    default:
      return BlockRows<1, 16, I8Blocks, kOneBlockL2Bytes>(a, b0, b1);
  }
}

}  // namespace zaya::cpu::avx512
