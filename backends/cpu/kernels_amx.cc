#include "kernels_amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <type_traits>

#include "kernels.h"  // the int8 block layout's constants

// Built with the AMX and AVX-512 flags for this file only; nothing here runs unless MatVecIsa()
// said so.
namespace zaya::cpu::amx {
namespace {

constexpr long kArchReqXcompPerm = 0x1023;  // asm/prctl.h
constexpr long kXfeatureXtiledata = 18;
constexpr int64_t kRows = 16;

// The tiles of one call: loads a configuration where it differs from the one loaded (ldtilecfg
// also zeroes every tile), and releases the tile state on the way out, so that a thread between
// calls carries no tile data through context switches.
class Tiles {
 public:
  Tiles() = default;
  Tiles(const Tiles&) = delete;
  Tiles& operator=(const Tiles&) = delete;
  ~Tiles() {
    if (loaded_) _tile_release();
  }
  void Use(const TileConfig& c) {
    if (loaded_ && c == current_) return;
    _tile_loadconfig(&c);
    current_ = c;
    loaded_ = true;
  }

 private:
  TileConfig current_;
  bool loaded_ = false;
};

// What follows a tile's chunks for m tokens from i0 x block `b` (acc: the C tile as stored, m rows
// of 16 f32): the columns past the last whole chunk through vdpbf16ps, in order, then the bias.
struct Out {
  const uint16_t* w;
  const uint16_t* xa;
  int64_t k, k32, t, n, block;  // block: uint16 per block of 16 rows
  const float* bias;
  float* y;

  void Finish(const float* acc, int64_t b, int64_t i0, int64_t m) const {
    const int64_t row = b * kRows, rem = k - k32;
    const __m512 bv = bias != nullptr ? _mm512_loadu_ps(bias + row) : _mm512_setzero_ps();
    const uint16_t* tail_w = w + b * block + k32 * kRows;  // line k32 / 2 of the block
    const uint16_t* tail_x = xa + k32 * t + i0 * rem;
    for (int64_t i = 0; i < m; ++i) {
      __m512 v = _mm512_load_ps(acc + i * kRows);
      for (int64_t p = 0; p < rem / 2; ++p) {
        uint32_t pair;
        std::memcpy(&pair, tail_x + i * rem + 2 * p, 4);
        v = _mm512_dpbf16_ps(v, reinterpret_cast<__m512bh>(_mm512_loadu_si512(tail_w + p * 32)),
                             reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pair))));
      }
      _mm512_storeu_ps(y + (i0 + i) * n + row, _mm512_add_ps(v, bv));
    }
  }
};

// Asks for a chunk's 16 weight lines (1 KiB) into L1 just before its tile load reads them. The
// tile loads alone left one token's matvec at 27-30 GB/s in some hours where the same loop with
// these prefetches read 32-34, as vector loads did (cpu_kernel_bench, docs/performance.md,
// session 25); in hours where the tiles already read 33-34 they cost nothing measurable. Our
// reading of why: the tile instructions wait for each other (the tiles are not renamed), so the
// loop's tile loads issue late, while a prefetch leaves as soon as the core decodes it, that is
// as far ahead as the reorder buffer reaches. A prefetch a chunk or more ahead gained no more.
__attribute__((always_inline)) inline void FetchChunk(const uint16_t* wc) {
#pragma GCC unroll 16
  for (int l = 0; l < 16; ++l) {
    _mm_prefetch(reinterpret_cast<const char*>(wc) + 64 * l, _MM_HINT_T0);
  }
}

// Up to 16 tokens (a decode step, or an expert's few): one tile of x (tile 3) times up to 3
// blocks (tiles 4-6) into tiles 0-2, so that 3 weight streams run at once.
void FewTokens(const Out& o, int64_t b0, int64_t b1, Tiles& tiles) {
  const int m = static_cast<int>(o.t);
  TileConfig cfg;
  for (int c = 0; c < 3; ++c) cfg.Set(c, m, 64);
  cfg.Set(3, m, 64);
  for (int c = 4; c < 7; ++c) cfg.Set(c, kRows, 64);
  tiles.Use(cfg);
  alignas(64) float acc[kRows * kRows];
  const int64_t chunks = o.k32 / 32;
  for (int64_t b = b0; b < b1; b += 3) {
    const int64_t nb = b1 - b < 3 ? b1 - b : 3;
    const uint16_t* wb = o.w + b * o.block;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    for (int64_t c = 0; c < chunks; ++c) {
      const uint16_t* wc = wb + c * 32 * kRows;  // 16 lines of 64 bytes a chunk
      FetchChunk(wc);
      if (nb > 1) FetchChunk(wc + o.block);
      if (nb > 2) FetchChunk(wc + 2 * o.block);
      _tile_loadd(3, o.xa + c * o.t * 32, 64);
      _tile_loadd(4, wc, 64);
      _tile_dpbf16ps(0, 3, 4);
      if (nb > 1) {
        _tile_loadd(5, wc + o.block, 64);
        _tile_dpbf16ps(1, 3, 5);
      }
      if (nb > 2) {
        _tile_loadd(6, wc + 2 * o.block, 64);
        _tile_dpbf16ps(2, 3, 6);
      }
    }
    _tile_stored(0, acc, 64);
    o.Finish(acc, b, 0, m);
    if (nb > 1) {
      _tile_stored(1, acc, 64);
      o.Finish(acc, b + 1, 0, m);
    }
    if (nb > 2) {
      _tile_stored(2, acc, 64);
      o.Finish(acc, b + 2, 0, m);
    }
  }
}

// More than 16 tokens (prefill): 2 groups of 16 tokens (tiles 4, 5) x 2 blocks (tiles 6, 7) into
// tiles 0-3, each loaded tile used twice. A pair of blocks (128 KiB at K = 2048) stays in L2
// while every group of tokens passes over it; the first group's pass, which streams the pair from
// memory, prefetches as FewTokens does (24-64 tokens 10-15% faster, 512 within the noise).
void ManyTokens(const Out& o, int64_t b0, int64_t b1, Tiles& tiles) {
  const int64_t groups = (o.t + kRows - 1) / kRows, chunks = o.k32 / 32;
  alignas(64) float acc[kRows * kRows];
  for (int64_t b = b0; b < b1; b += 2) {
    const bool two_blocks = b1 - b > 1;
    const uint16_t* wb = o.w + b * o.block;
    for (int64_t g = 0; g < groups; g += 2) {
      const bool two_groups = groups - g > 1;
      const int64_t i0 = g * kRows, i1 = i0 + kRows;
      const int m0 = static_cast<int>(o.t - i0 < kRows ? o.t - i0 : kRows);
      const int m1 = two_groups ? static_cast<int>(o.t - i1 < kRows ? o.t - i1 : kRows) : m0;
      TileConfig cfg;
      cfg.Set(0, m0, 64);
      cfg.Set(1, m0, 64);
      cfg.Set(2, m1, 64);
      cfg.Set(3, m1, 64);
      cfg.Set(4, m0, 64);
      cfg.Set(5, m1, 64);
      cfg.Set(6, kRows, 64);
      cfg.Set(7, kRows, 64);
      tiles.Use(cfg);
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t c = 0; c < chunks; ++c) {
        const uint16_t* wc = wb + c * 32 * kRows;
        const uint16_t* xc = o.xa + (c * o.t + i0) * 32;
        if (g == 0) {
          FetchChunk(wc);
          if (two_blocks) FetchChunk(wc + o.block);
        }
        _tile_loadd(4, xc, 64);
        _tile_loadd(6, wc, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (two_blocks) {
          _tile_loadd(7, wc + o.block, 64);
          _tile_dpbf16ps(1, 4, 7);
        }
        if (two_groups) {
          _tile_loadd(5, xc + kRows * 32, 64);
          _tile_dpbf16ps(2, 5, 6);
          if (two_blocks) _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, acc, 64);
      o.Finish(acc, b, i0, m0);
      if (two_blocks) {
        _tile_stored(1, acc, 64);
        o.Finish(acc, b + 1, i0, m0);
      }
      if (two_groups) {
        _tile_stored(2, acc, 64);
        o.Finish(acc, b, i1, m1);
        if (two_blocks) {
          _tile_stored(3, acc, 64);
          o.Finish(acc, b + 1, i1, m1);
        }
      }
    }
  }
}

// int8 weights in the block layout: tiles 0 and 1 hold the integer sums of alternate groups (C),
// 2 and 3 a group's two 64-column chunks of x (A: 16 tokens x 64 bytes), 4 and 5 its first and
// last 16 weight lines (B: 16 lines of 16 rows x 4 bytes).
struct I8Out {
  const uint8_t* w;
  const int8_t* xa;             // [K / 64][T][64], avx512::QuantizeXChunks
  const float* xs;              // [K / 128][T]
  const int32_t* xc;            // [K / 128][T]
  int64_t groups, t, n, block;  // block: bytes per 16-row block
  const float* bias;
  float* y;
};

// Bytes on from a group's lines that the first token tile fetches into L1 and into L2. Near is
// the group itself: asked for right before its tile loads (as FetchChunk does for bf16), 9-16
// tokens read 25-26 -> 27-29 GB/s and 32-128 tokens 3-7% faster than with the next group's lines
// (cpu_kernel_bench, alternated; docs/performance.md, session 25).
constexpr int64_t kI8NearBytes = 0, kI8FarBytes = 16 * kI8GroupBytes;

// Fetches group wq's own lines into L1 and those kI8FarBytes on into L2.
__attribute__((always_inline)) inline void FetchGroup(const uint8_t* wq) {
#pragma GCC unroll 33
  for (int l = 0; l < kI8GroupBytes / 64; ++l) {
    _mm_prefetch(reinterpret_cast<const char*>(wq) + kI8NearBytes + 64 * l, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(wq) + kI8FarBytes + 64 * l, _MM_HINT_T1);
  }
}

// One token's float step for a group: its 16 rows' integer sums (a row of the stored C tile) plus
// x's offset c, times x's scale, times the rows' scales ws, added to acc. The one place both AMX
// tiles spell it, so that their outputs stay bitwise alike (and the AVX-512 tile's).
__attribute__((always_inline)) inline __m512 GroupStep(__m512 acc, const int32_t* sums, int32_t c,
                                                       float sc, __m512 ws) {
  const __m512i v = _mm512_add_epi32(_mm512_set1_epi32(c), _mm512_load_si512(sums));
  return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(sc)), ws, acc);
}

// One 16-row block x the m (<= 16) tokens from i0, over all K. Group q's two tdpbsud go to C tile
// q % 2, and the float steps of group q - 1 run while the tile unit works on q; the f32 sums stay
// in zmm registers. fetch: this tile is the block's first, which streams it from memory.
template <bool kFetch>
__attribute__((always_inline)) inline void I8BlockTokens(const I8Out& o, int64_t b, int64_t i0,
                                                         int m) {
  const uint8_t* wb = o.w + b * o.block;
  alignas(64) int32_t sums[kRows * kRows];
  __m512 acc[kRows];
#pragma GCC unroll 16
  for (int i = 0; i < kRows; ++i) acc[i] = _mm512_setzero_ps();
  const auto issue = [&]<int C>(int64_t q) __attribute__((always_inline)) {
    const uint8_t* wq = wb + q * kI8GroupBytes;
    if constexpr (kFetch) FetchGroup(wq);
    const int8_t* x0 = o.xa + (2 * q * o.t + i0) * 64;
    _tile_loadd(2, x0, 64);
    _tile_loadd(4, wq, 64);
    _tile_loadd(3, x0 + o.t * 64, 64);
    _tile_loadd(5, wq + 16 * 64, 64);
    // GCC's tile intrinsics paste their tile numbers into the assembly: literals only.
    if constexpr (C == 0) {
      _tile_zero(0);
      _tile_dpbsud(0, 2, 4);
      _tile_dpbsud(0, 3, 5);
    } else {
      _tile_zero(1);
      _tile_dpbsud(1, 2, 4);
      _tile_dpbsud(1, 3, 5);
    }
  };
  const auto finish = [&]<int C>(int64_t q) __attribute__((always_inline)) {
    if constexpr (C == 0) {
      _tile_stored(0, sums, 64);
    } else {
      _tile_stored(1, sums, 64);
    }
    const __m512 ws = _mm512_loadu_ps(wb + q * kI8GroupBytes + kRows * kI8Group);
    const int32_t* c = o.xc + q * o.t + i0;
    const float* sc = o.xs + q * o.t + i0;
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      if (i < m) acc[i] = GroupStep(acc[i], sums + i * kRows, c[i], sc[i], ws);
    }
  };
  int64_t q = 0;
  for (; q + 1 < o.groups; q += 2) {
    issue.template operator()<0>(q);
    if (q > 0) finish.template operator()<1>(q - 1);
    issue.template operator()<1>(q + 1);
    finish.template operator()<0>(q);
  }
  if (q < o.groups) {  // an odd count: the last group in tile 0
    issue.template operator()<0>(q);
    if (q > 0) finish.template operator()<1>(q - 1);
    finish.template operator()<0>(q);
  } else {
    finish.template operator()<1>(q - 1);
  }
  const int64_t row = b * kRows;
  const __m512 bv = o.bias != nullptr ? _mm512_loadu_ps(o.bias + row) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < kRows; ++i) {
    if (i < m) _mm512_storeu_ps(o.y + (i0 + i) * o.n + row, _mm512_add_ps(acc[i], bv));
  }
}

// Up to this many tokens I8Blocks takes its blocks three at a time (I8ThreeBlocksTokens): from
// memory three weight streams read 9-16 tokens 10-12% faster than one block with a fetch ahead,
// and 32-64 tokens 5-8%; past that a pass re-reads three blocks from L2 for every 16 tokens where
// one block stays in L1, and 128 tokens ran 6% slower (cpu_kernel_bench, docs/performance.md,
// session 24).
constexpr int64_t kI8ThreeBlocksMaxTokens = 64;

// Three 16-row blocks from b x the m (<= 16) tokens from i0, over all K: three weight streams at
// once, which the memory system serves faster than one. Tiles: 0-2 the blocks' C, 3 and 4 a
// group's two chunks of x (A), 5-7 the weight lines (B), taken in turn. Eight tiles leave no
// second C per block, so a group's sums are stored before the next group's start; the f32 sums
// (3 blocks x 16 tokens x 16 rows, more than the zmm registers) live in acc on the stack. Every
// float step is I8BlockTokens's, in the same order, so each output is bitwise the one-block
// tile's (and the AVX-512 tile's).
template <bool kFetch>
__attribute__((always_inline)) inline void I8ThreeBlocksTokens(const I8Out& o, int64_t b,
                                                               int64_t i0, int m) {
  const uint8_t* w0 = o.w + b * o.block;
  const uint8_t* w1 = w0 + o.block;
  const uint8_t* w2 = w1 + o.block;
  alignas(64) int32_t sums[3][kRows * kRows];
  alignas(64) float acc[3][kRows * kRows];
  for (int j = 0; j < 3; ++j) {
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) _mm512_store_ps(acc[j] + i * kRows, _mm512_setzero_ps());
  }
  const auto finish = [&](int j, int64_t q, const uint8_t* wq) __attribute__((always_inline)) {
    const __m512 ws = _mm512_loadu_ps(wq + kRows * kI8Group);
    const int32_t* c = o.xc + q * o.t + i0;
    const float* sc = o.xs + q * o.t + i0;
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      if (i < m) {
        float* a = acc[j] + i * kRows;
        _mm512_store_ps(a, GroupStep(_mm512_load_ps(a), sums[j] + i * kRows, c[i], sc[i], ws));
      }
    }
  };
  for (int64_t q = 0; q < o.groups; ++q) {
    const uint8_t* a = w0 + q * kI8GroupBytes;
    const uint8_t* bb = w1 + q * kI8GroupBytes;
    const uint8_t* cc = w2 + q * kI8GroupBytes;
    if constexpr (kFetch) {
      FetchGroup(a);
      FetchGroup(bb);
      FetchGroup(cc);
    }
    const int8_t* x0 = o.xa + (2 * q * o.t + i0) * 64;
    _tile_loadd(3, x0, 64);
    _tile_loadd(4, x0 + o.t * 64, 64);
    _tile_loadd(5, a, 64);
    _tile_zero(0);
    _tile_dpbsud(0, 3, 5);
    _tile_loadd(6, a + 16 * 64, 64);
    _tile_dpbsud(0, 4, 6);
    _tile_loadd(7, bb, 64);
    _tile_zero(1);
    _tile_dpbsud(1, 3, 7);
    _tile_loadd(5, bb + 16 * 64, 64);
    _tile_dpbsud(1, 4, 5);
    _tile_loadd(6, cc, 64);
    _tile_zero(2);
    _tile_dpbsud(2, 3, 6);
    _tile_loadd(7, cc + 16 * 64, 64);
    _tile_dpbsud(2, 4, 7);
    _tile_stored(0, sums[0], 64);
    finish(0, q, a);
    _tile_stored(1, sums[1], 64);
    finish(1, q, bb);
    _tile_stored(2, sums[2], 64);
    finish(2, q, cc);
  }
  for (int j = 0; j < 3; ++j) {
    const int64_t row = (b + j) * kRows;
    const __m512 bv = o.bias != nullptr ? _mm512_loadu_ps(o.bias + row) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      if (i < m) {
        _mm512_storeu_ps(o.y + (i0 + i) * o.n + row,
                         _mm512_add_ps(_mm512_load_ps(acc[j] + i * kRows), bv));
      }
    }
  }
}

void I8Blocks(const I8Out& o, int64_t b0, int64_t b1, Tiles& tiles) {
  // One configuration for every tile: a last tile of m < 16 tokens still loads 16 rows of x (the
  // padding past the end of QuantizeXChunks's buffer, or the next chunk's tokens), and its C rows
  // past m are never read.
  TileConfig cfg;
  for (int c = 0; c < 8; ++c) cfg.Set(c, kRows, 64);
  tiles.Use(cfg);
  // fn<kFetch>(i0, m) over the token tiles: the first streams the blocks from memory.
  const auto by_tokens = [&o](const auto& fn) {
    for (int64_t i0 = 0; i0 < o.t; i0 += kRows) {
      const int m = static_cast<int>(o.t - i0 < kRows ? o.t - i0 : kRows);
      if (i0 == 0) {
        fn(std::true_type{}, i0, m);
      } else {
        fn(std::false_type{}, i0, m);
      }
    }
  };
  if (o.t <= kI8ThreeBlocksMaxTokens) {
    for (; b0 + 3 <= b1; b0 += 3) {
      by_tokens([&](auto fetch, int64_t i0, int m) {
        I8ThreeBlocksTokens<decltype(fetch)::value>(o, b0, i0, m);
      });
    }
  }
  for (int64_t b = b0; b < b1; ++b) {
    by_tokens(
        [&](auto fetch, int64_t i0, int m) { I8BlockTokens<decltype(fetch)::value>(o, b, i0, m); });
  }
}

}  // namespace

std::string TileDataUnavailable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return "no CPUID leaf 7";
  if ((d & (1u << 24)) == 0 || (d & (1u << 22)) == 0 || (d & (1u << 25)) == 0) {
    return "this CPU has no AMX-TILE/AMX-BF16/AMX-INT8";
  }
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    return std::string("the kernel refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM: ") +
           std::strerror(errno) + ")";
  }
  return "";
}

void ChunkX(const float* x, int64_t t, int64_t k, uint16_t* xa, int64_t i_begin, int64_t i_end) {
  const int64_t k32 = k & ~int64_t{31}, rem = k - k32;
  const __mmask16 lo = rem >= 16 ? 0xffff : static_cast<__mmask16>((1u << rem) - 1);
  const __mmask16 hi = rem > 16 ? static_cast<__mmask16>((1u << (rem - 16)) - 1) : 0;
  for (int64_t i = i_begin; i < i_end; ++i) {
    const float* xi = x + i * k;
    for (int64_t j = 0; j < k32; j += 32) {
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(xi + j + 16), _mm512_loadu_ps(xi + j));
      _mm512_storeu_si512(xa + ((j / 32) * t + i) * 32, reinterpret_cast<const __m512i&>(v));
    }
    if (rem != 0) {
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, xi + k32 + 16),
                                             _mm512_maskz_loadu_ps(lo, xi + k32));
      _mm512_mask_storeu_epi16(xa + k32 * t + i * rem, static_cast<__mmask32>((1ull << rem) - 1),
                               reinterpret_cast<const __m512i&>(v));
    }
  }
}

void MatVecBf16Tiles(const uint16_t* w, int64_t r0, int64_t r1, int64_t k, const uint16_t* xa,
                     int64_t t, int64_t n, const float* bias, float* y) {
  if (t <= 0 || r1 <= r0) return;
  const Out o{w, xa, k, k & ~int64_t{31}, t, n, k / 2 * 32, bias, y};
  Tiles tiles;
  if (t <= kRows) return FewTokens(o, r0 / kRows, r1 / kRows, tiles);
  ManyTokens(o, r0 / kRows, r1 / kRows, tiles);
}

void MatVecI8Blocks(const uint8_t* w, int64_t r0, int64_t r1, int64_t k, const int8_t* xa,
                    const float* xs, const int32_t* xc, int64_t t, int64_t n, const float* bias,
                    float* y) {
  if (t <= 0 || r1 <= r0) return;
  // I8BlockBytes(k) spelled out: an inline function of kernels.h odr-used here could be emitted
  // with this file's -m flags and picked for other callers (tile_driver.h says more).
  const I8Out o{w, xa, xs, xc, k / kI8Group, t, n, k / kI8Group * kI8GroupBytes, bias, y};
  Tiles tiles;
  I8Blocks(o, r0 / kRows, r1 / kRows, tiles);
}

}  // namespace zaya::cpu::amx
