#include "kernels_amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
// while every group of tokens passes over it.
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

}  // namespace

std::string TileDataUnavailable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return "no CPUID leaf 7";
  if ((d & (1u << 24)) == 0 || (d & (1u << 22)) == 0) return "this CPU has no AMX-TILE/AMX-BF16";
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

}  // namespace zaya::cpu::amx
