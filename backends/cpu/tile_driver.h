// How the hand-written matvec tiles (kernels_avx2.cc, kernels_avx512.cc) walk a thread's rows and
// the batch's tokens; each ISA file supplies only its tiles.
//
// A tile policy W provides:
//   static constexpr int kRowsOne;              rows per tile for one token (the decode case)
//   static constexpr int kRowsMany, kTokens;    the tile for several tokens
//   static constexpr int kRowsWide, kTokensWide; optional: a second several-token tile, taken
//                                               where it needs fewer passes (see TileRows)
//   template <int R, int T>
//   void Tile(int64_t row0, int64_t m, int64_t i0, float out[R][T], int64_t ahead) const;
//   int64_t RowBytes() const;                   bytes of one weight row (with its scales)
// the last from its base, Bf16Weights or I8Weights below.
// where Tile computes out[r][i] = W[row0 + r * m] . x[i0 + i] (no bias, no activation), and
// prefetches each weight (and scale) line it reads with PrefetchWeights(line, ahead rows on).
//
// Everything here lives in an anonymous namespace on purpose: the header is compiled into files
// built with different -m flags, and a template instantiated in two of them (StoreTile<2, 4>, say)
// would otherwise be one symbol that the linker may take from the AVX-512 file for the AVX2 path.
//
// Thread safety: pure apart from y; callers split rows between threads.
#pragma once

#include <xmmintrin.h>

#include <cstdint>

#include "kernels.h"

namespace zaya::cpu {
namespace {  // NOLINT(google-build-namespaces): see the header comment

#define ZAYA_TILE_INLINE __attribute__((always_inline)) inline

// Memory access: a tile's R rows are not adjacent. A thread's row range [r0, r1) is cut into R
// equal slices and a tile takes row q of each slice, so the thread reads R long sequential streams
// (each slice front to back) instead of hopping from one R-row block to the next. Zen 3's
// prefetchers follow long streams much better: one token, two threads, from DRAM
// (cpu_kernel_bench, interleaved runs of both binaries at 2048x2048, 32768x1024, 1024x1024 and
// 256x1024): bf16 18-26 -> 29-40 GB/s, int8 14-23 -> 20-35 GB/s. Each stream
// also prefetches kStreamAheadBytes ahead of itself into L1 (past a slice's end that touches the
// next slice or the next matrix, which is harmless: prefetches do not fault). 1 KiB ahead was the
// most consistent of 0.5-8 KiB for both dtypes; the spread between runs of one setting on this
// shared machine (up to 30%) hides finer differences. On Zen 4 (session 6) 1, 2 and 4 KiB could not
// be told apart either (one and four tokens, 4096 x 2048 from DRAM: 17-31 GB/s for all three).
constexpr int64_t kStreamAheadBytes = 1024;

// Each stream is also fetched into L2 kStreamAheadL2Bytes ahead (session 6, Zen 4). The L1
// prefetches alone keep few lines in flight (L1 tracks far fewer misses than L2), which a tile
// reading one token's worth per line hid behind the hardware prefetchers, but tiles doing 2-6
// tokens of arithmetic per line did not: 4096 x 2048 bf16 from DRAM, three interleaved rounds,
// 4 tokens 22.7-24.8 -> 28.1-30.9 GB/s, 1 token 25-35 -> 31-34 GB/s; 8 KiB ahead measured the
// same as 4.
constexpr int64_t kStreamAheadL2Bytes = 4096;

ZAYA_TILE_INLINE void Prefetch(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

// What a stream fetches kStreamAheadL2Bytes ahead, besides the line kStreamAheadBytes ahead. kL2
// (prefetcht1) is what session 6 measured on Zen 4 (above) and what the AVX2 tiles keep. On Zen 5
// (session 10) that far fetch cost one token a fifth of its rate, and a prefetchnta in its place
// did better for several tokens. One core, 4096 x 2048 from DRAM (cpu_kernel_bench --mib 1024
// --threads 1, two interleaved rounds, GB/s), kL2 / kNone / kNta:
//   bf16 1 token 30.5-31.3 / 37.0-37.7 / 33.6-35.3; 2 tokens 26.7-27.0 / 31.2-31.5 / 30.1-30.7;
//        4 tokens 25.1-25.3 / 26.4-26.6 / 27.3-27.6; 8 tokens 23.2-23.7 / 19.8-20.4 / 24.1-24.3
//   int8 1 token 28.6-30.5 / 33.5-35.0 / 32.1-34.1; 2 tokens 30.3-31.3 / 30.7-30.9 / 32.9-33.1;
//        4 tokens 25.8-29.2 / 22.6-23.5 / 30.3-30.5; 8 tokens 18.6-19.5 / 13.3-13.3 / 18.9-19.0
// (2 or 8 KiB for the far fetch, 0.5 or 2 KiB for the near one did no better). Why is a guess
// without the performance counters, which this VM does not expose: a several-token tile keeps x
// (4 KiB per bf16 token at K = 2048, on every L1 set) in L1, and the tile was 8-21% faster with
// every token's x at one address (6-16 tokens), so lines that crowd L1 cost it; prefetcht1's lines
// seem to do that more than prefetchnta's, and for one token the far fetch buys nothing over the
// hardware's own L2 streamer.
// Session 20's Intel Xeon (AVX-512, AMX) reads several tokens' streams 2-3x slower with kNta
// than with kNone (4096 x 2048 from DRAM, two cores, GB/s: bf16 row-major 2 tokens 11.6 -> 30.0,
// 4 tokens 12.6 -> 28.5, 8 tokens 9.6 -> 22.3; int8 group layout 12.9 -> 29.3, 13.5 -> 27.4,
// 13.4 -> 21.1), so kNta fetches only where FarNtaFetch() (kernels.h: AMD CPUs).
enum class FarFetch { kL2, kNta, kNone };
const bool kFarNtaFetch = FarNtaFetch();

// The 64-byte line at p of a weight stream: the line kStreamAheadBytes ahead into L1 and, as F
// says, the one kStreamAheadL2Bytes ahead.
template <FarFetch F>
ZAYA_TILE_INLINE void PrefetchStream(const void* p) {
  const char* c = static_cast<const char*>(p);
  _mm_prefetch(c + kStreamAheadBytes, _MM_HINT_T0);
  if constexpr (F == FarFetch::kL2) _mm_prefetch(c + kStreamAheadL2Bytes, _MM_HINT_T1);
  if constexpr (F == FarFetch::kNta) {
    if (kFarNtaFetch) _mm_prefetch(c + kStreamAheadL2Bytes, _MM_HINT_NTA);
  }
}

// What a tile prefetches for a weight (or scale) line p that it is about to read, where `ahead` is
// 0 or the distance in bytes to the same line of the row Slices will give this tile row next time
// round (the next chunk, below): the stream's own line kStreamAheadBytes on into L1 either way,
// and its own line kStreamAheadL2Bytes on as F says (ahead = 0) or that line of the next chunk
// into L2 (this stream came from L2 already).
template <FarFetch F = FarFetch::kL2>
ZAYA_TILE_INLINE void PrefetchWeights(const void* p, int64_t ahead) {
  if (ahead == 0) {
    PrefetchStream<F>(p);
  } else {
    _mm_prefetch(static_cast<const char*>(p) + ahead, _MM_HINT_T1);
  }
}

// The same for an int8 row's scales, one f32 per 32 columns, where the tile reads column j of the
// row: an eighth as fast as the weights, so its own stream is prefetched the same distance in
// columns (into L1 only); `ahead` is in bytes of scales.
ZAYA_TILE_INLINE void PrefetchScales(const float* row_scales, int64_t j, int64_t ahead) {
  if (ahead == 0) {
    Prefetch(row_scales + (kStreamAheadBytes + j) / kI8Group);
  } else {
    _mm_prefetch(reinterpret_cast<const char*>(row_scales + j / kI8Group) + ahead, _MM_HINT_T1);
  }
}

// kernels.h's Bf16ToF32 again, forced inline: an inline function of a named namespace compiled
// here could be emitted out of line with this file's -m flags (see the header comment).
ZAYA_TILE_INLINE float Bf16Value(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// The columns [from, k) of each (row, token) in float and in order, added to the SIMD part's sum
// in out: the tiles' tail past their last whole vector. Row r of the tile starts at w + r * rs
// (int8 scales at scales + r * srs); token i's x at x + i * k.
template <int R, int T>
ZAYA_TILE_INLINE void AddTailBf16(const uint16_t* w, int64_t rs, const float* x, int64_t k,
                                  int64_t from, float out[R][T]) {
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < T; ++i) {
      for (int64_t j = from; j < k; ++j) out[r][i] += x[i * k + j] * Bf16Value(w[r * rs + j]);
    }
  }
}
template <int R, int T>
ZAYA_TILE_INLINE void AddTailI8(const int8_t* w, const float* scales, int64_t rs, int64_t srs,
                                const float* x, int64_t k, int64_t from, float out[R][T]) {
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < T; ++i) {
      for (int64_t j = from; j < k; ++j) {
        out[r][i] +=
            x[i * k + j] * (static_cast<float>(w[r * rs + j]) * scales[r * srs + j / kI8Group]);
      }
    }
  }
}

// The weight side of the tile policies, the same for every ISA: a policy derives from one of
// these and adds its tiles and x.
struct Bf16Weights {
  const uint16_t* w;  // [N, K]
  int64_t k;
  int64_t RowBytes() const { return 2 * k; }
};
struct I8Weights {
  const int8_t* w;      // [N, K]
  const float* scales;  // [N, nb]
  int64_t k, nb;        // nb = zaya_i8_scales(K)
  int64_t RowBytes() const { return k + 4 * nb; }
};

// Tile row r is output row row0 + r * m.
template <int R, int T>
ZAYA_TILE_INLINE void StoreTile(const float out[R][T], int64_t row0, int64_t m, int64_t i0,
                                int64_t n, const float* bias, float* y) {
  for (int r = 0; r < R; ++r) {
    const int64_t row = row0 + r * m;
    const float b = bias != nullptr ? bias[row] : 0.f;
    for (int i = 0; i < T; ++i) y[(i0 + i) * n + row] = out[r][i] + b;
  }
}

// `ahead`: rows on from each tile row to prefetch into L2 (0: none, the streams' own prefetch).
template <int R, int T, class W>
ZAYA_TILE_INLINE void TileAt(const W& w, int64_t row0, int64_t m, int64_t i0, int64_t n,
                             const float* bias, float* y, int64_t ahead = 0) {
  float out[R][T];
  w.template Tile<R, T>(row0, m, i0, out, ahead);
  StoreTile<R, T>(out, row0, m, i0, n, bias, y);
}

// The last `rest` (< T + 1) tokens from i0 on, as one tile of exactly that many.
template <int R, int T, class W>
ZAYA_TILE_INLINE void RestTile(const W& w, int64_t row0, int64_t m, int64_t i0, int64_t rest,
                               int64_t n, const float* bias, float* y, int64_t ahead = 0) {
  if constexpr (T >= 1) {
    if (rest == T) {
      TileAt<R, T>(w, row0, m, i0, n, bias, y, ahead);
    } else {
      RestTile<R, T - 1>(w, row0, m, i0, rest, n, bias, y, ahead);
    }
  }
}

// [r0, r1) as R slices of m rows (R streams, see kStreamAheadBytes), the last (r1 - r0) % R rows
// one at a time.
//
// Several token tiles: the slices are walked in chunks of rows holding ~kChunkBytes of weights,
// and each token tile passes over a whole chunk before the next tile starts. A token tile's x
// (6 tokens x 2048 columns of bf16: 24 KiB; of int8: 12 KiB) then stays in L1 while the chunk's
// weights, after the first tile has brought them in, come from L2. Tile by tile along each row
// instead, all of x (64 KiB at 16 tokens) passed through L1 for every R rows, and L2 bandwidth
// capped the batched tiles. Each (row, token) still runs the same arithmetic, so the order changes
// no bit. While the later token tiles of a chunk run from L2, they prefetch the next chunk into L2,
// so that DRAM keeps streaming. cpu_kernel_bench, 16 tokens, 2048 x 2048 matrices from DRAM (64
// MiB), two Zen 4 cores, interleaved runs: AVX-512 bf16 107-108 -> 120 GMAC/s with the chunks and
// 126-133 with the prefetch too, int8 104-111 -> 113 -> 117-119; AVX2 bf16 69-72 -> 77-78, int8
// 93-105 -> 103-108 (both steps). 8 tokens (two tiles), AVX-512 bf16: 79 -> 92.
// Until session 7 each tile call prefetched its share of the next chunk's rows in one burst of
// up to 128 prefetches after the tile, more than the cores track at once; since then the tiles
// issue them one per line they read (PrefetchWeights), spread over their loop. AVX-512 bf16, 16
// tokens of a 4096 x 2048 matrix from DRAM: 120-138 -> 143-148 GMAC/s in the first three
// interleaved rounds (the machine then got too noisy to tell); the 8B model at batch 16, six
// interleaved pairs: bf16 48.8-67.7 (median 59) -> 59.3-69.3 (median 64) tok/s, int8 unchanged
// (69.9-78.8 against 70.2-72.0, three pairs).
constexpr int64_t kChunkBytes = 256 << 10;

template <int R, int TT, class W>
ZAYA_TILE_INLINE void Slices(const W& w, int64_t r0, int64_t r1, int64_t t, int64_t n,
                             const float* bias, float* y) {
  const int64_t m = (r1 - r0) / R;
  const int64_t row_bytes = w.RowBytes();
  const int64_t fit = row_bytes > 0 ? kChunkBytes / (R * row_bytes) : m;
  const int64_t chunk = TT == 1 || fit > m ? m : fit > 1 ? fit : 1;
  const int64_t passes = (t + TT - 1) / TT;  // token tiles per chunk
  for (int64_t q0 = 0; q0 < m; q0 += chunk) {
    const int64_t q1 = q0 + chunk < m ? q0 + chunk : m;
    for (int64_t p = 0; p < passes; ++p) {
      const int64_t i = p * TT;
      // Only the first token tile of a chunk reads its weights from DRAM; the others run from
      // L2 and would leave DRAM idle, so they fetch the next chunk's rows into L2 meanwhile,
      // each line as they read the matching line of their own rows (PrefetchWeights).
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t a = p > 0 && q + chunk < m ? chunk : 0;  // rows on to the next chunk's row
        if (i + TT <= t) {
          TileAt<R, TT>(w, r0 + q, m, i, n, bias, y, a);
        } else {
          RestTile<R, TT - 1>(w, r0 + q, m, i, t - i, n, bias, y, a);
        }
      }
    }
  }
  for (int64_t r = r0 + R * m; r < r1; ++r) {
    int64_t i = 0;
    for (; i + TT <= t; i += TT) TileAt<1, TT>(w, r, 1, i, n, bias, y);
    RestTile<1, TT - 1>(w, r, 1, i, t - i, n, bias, y);
  }
}

template <class W>
concept HasWideTile = requires {
  W::kRowsWide;
  W::kTokensWide;
};

// Rows [r0, r1) of y[T,N] = x W^T + bias with W's tiles.
//
// A policy with a wide tile uses it where it passes over each chunk fewer times than the many
// tile: every pass reads the chunk's weights again (from L2) and refills the accumulators, and a
// last pass of one or two tokens barely uses the weights it loads. Which tile a row meets changes
// no bit of it (each (row, token) sums in the same order in every tile).
template <class W>
ZAYA_TILE_INLINE void TileRows(const W& w, int64_t r0, int64_t r1, int64_t t, int64_t n,
                               const float* bias, float* y) {
  if (t == 1) {
    Slices<W::kRowsOne, 1>(w, r0, r1, t, n, bias, y);
    return;
  }
  if constexpr (HasWideTile<W>) {
    const int64_t wide = (t + W::kTokensWide - 1) / W::kTokensWide;
    const int64_t many = (t + W::kTokens - 1) / W::kTokens;
    if (wide < many) {
      Slices<W::kRowsWide, W::kTokensWide>(w, r0, r1, t, n, bias, y);
      return;
    }
  }
  Slices<W::kRowsMany, W::kTokens>(w, r0, r1, t, n, bias, y);
}

}  // namespace
}  // namespace zaya::cpu
