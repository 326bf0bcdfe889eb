// Reference-quality CPU kernels for the backend ops (see zaya/backend.h for the op contracts).
// Hot inner loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at run time
// (GCC target_clones). All activations f32; weights f32, bf16 (uint16 storage) or int8 + f32 scales.
//
// Thread safety: functions are pure apart from their outputs; parallelism comes from the pool passed in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../common/large_pages.h"
#include "thread_pool.h"
#include "zaya/backend.h"

namespace zaya::cpu {

// Vectors for matmul inputs the backend keeps itself (MoE's per-expert rows, the int8 tiles'
// rounded x) and for the benches' weights: 64-byte aligned, like the backend's buffers, and from
// 2 MiB on on huge pages (../common/large_pages.h says why). The AVX2 tiles read x 32 bytes at a
// time, and malloc's 16-byte alignment splits a quarter of those loads across cache lines. The
// int8 tile, which reads its rounded x as memory operands, measured 59-60 -> 63-65 GMAC/s (16
// tokens in cache); the bf16 tile, with x in registers, measured the same either way.
template <class T>
using AlignedVector = std::vector<T, backend_common::StreamedAllocator<T>>;

enum class WType { kF32, kBF16, kI8 };

// int8 weights carry one f32 scale per kI8Group consecutive values of a row (zaya/backend.h
// ZAYA_I8_BLOCK); a row of K values has zaya_i8_scales(K) scales, the last group maybe shorter.
constexpr int64_t kI8Group = ZAYA_I8_BLOCK;
static_assert(kI8Group % 32 == 0, "the row-major tiles scale x per 32 columns inside a group");

struct Weights {
  WType type = WType::kF32;
  const void* data = nullptr;     // [N, K]
  const float* scales = nullptr;  // i8: [N, zaya_i8_scales(K)]
  // i8 only: the bytes are in the tile layout (PackI8Tiles below), not row-major.
  bool i8_tiles = false;
  // bf16 only: the bytes are in the 16-row tile layout (PackBf16Tiles below), not row-major.
  bool bf16_tiles = false;
  // i8 only: `data` is in the 16-row block layout (PackI8Blocks below), the scales within it;
  // `scales` is unused.
  bool i8_blocks = false;
};

// The int8 tile (group) layout: int8 weights rearranged once, when the host prepares them after
// loading (zaya/backend.h weight_prepare), into the order in which the AVX-512 row-major tiles
// multiply them; since session 13 only for matrices outside the block layout (I8BlocksFit below),
// which is faster for every batch of two or more tokens. Read
// row-major, the tiles must shuffle every row's 256-column groups (8 instructions per row and
// group); docs/performance.md (session 9) has what that cost. In each row, a whole 256-column
// group starting at column g holds at byte g + 64c + 8L + b (c < 4, L < 8, b < 8) the weight of
// column g + 32L + 8c + b; columns past the last whole group keep their place. Values and scales
// are unchanged.
//
// True when this process's tiles read the layout, i.e. MatVecIsa() is kAvx512 or kAmx: weights are
// only packed then, so no other tile ever sees them.
bool I8TilesLayoutUsed();
// Rearranges rows [0, n) of w [N, K] in place into the tile layout. Requires I8TilesLayoutUsed().
void PackI8Tiles(int8_t* w, int64_t n, int64_t k);

// The bf16 tile layout: bf16 weights rearranged once, when the host prepares them (like the int8
// layout above), so that the AVX-512 tiles load 16 rows at once and multiply them by a broadcast
// x pair (kernels_avx512.cc, Bf16Blocks; docs/performance.md, session 12). Rows are taken in
// blocks of kBf16TileRows; block b holds the value of row 16b + r, column j at element
// 16bK + 32(j / 2) + 2r + j % 2. Values are unchanged, only their places.
//
// Ops must name a packed matrix from a block boundary in whole blocks.
// True when this process's tiles (AVX-512 or AMX) read the layout, as for int8.
constexpr int64_t kBf16TileRows = 16;
bool Bf16TilesLayoutUsed();
// Whether a bf16 matrix of rows_each rows (per expert, for [E, rows, K]) and K columns is packed:
// the layout is used, rows come in whole blocks, and K is even and at least 32. Below 32 columns
// the row-major tiles keep x in f32 (no whole 32-column vector to round) where the layout would
// round it to bf16, and such a matrix is too small for its speed to matter: packed, the tiny test
// model's 16-wide router MLP moved its logits by up to 1.4 (its test allows 6e-2; as written every
// position stays within it).
bool Bf16TilesFit(int64_t rows_each, int64_t k);
// Rearranges rows [0, n) of w [N, K] in place into the layout; n % 16 == 0, K even. Requires
// Bf16TilesLayoutUsed().
void PackBf16Tiles(uint16_t* w, int64_t n, int64_t k);

// The int8 block layout: what the bf16 layout above does for bf16, for int8 weights with a scale
// per kI8Group = 128 columns (kernels_avx512.cc, I8Blocks; docs/performance.md, sessions 13, 14
// and 22). Rows are taken in blocks of kI8TileRows, each I8BlockBytes(K) bytes: per column group
// q, 32 lines of weights (line c holds columns 128q + 4c .. 128q + 4c + 3 of the 16 rows: row r,
// column j at byte 4r + j % 4, as an unsigned byte, w + 128), then one line of the 16 rows' f32
// scales of group q (row r at float r). So block b, group q starts at byte b I8BlockBytes(K) +
// kI8GroupBytes q. One 64-byte load is 16 rows x 4 columns, which vpdpbusd multiplies by a
// broadcast 4 bytes of x per token (signed, as its second operand must be), and one 64-byte load is
// their scales. Values are unchanged, only their places (and the weights' offset).
//
// The scales sit in the weights' stream (session 14): with them in an array of their own, each
// row block was two streams, and a 4-block tile read 8 at once; one Zen 5 core pair streamed
// 2-8 tokens 2-9% and one token 3-4% faster with one stream per block (cpu_kernel_bench,
// interleaved in one process). The host therefore has to place the scales right after the weight
// (the model does: zaya/backend.h weight_prepare); else the weight keeps the group layout.
//
// Ops must name a packed matrix from a block boundary in whole blocks, with its own scales.
constexpr int64_t kI8TileRows = 16;
static_assert(kI8TileRows == kBf16TileRows, "the backend checks views of both layouts alike");
// Bytes of one column group of a block: 16 x 128 weights and 16 scales.
constexpr int64_t kI8GroupBytes = kI8TileRows * kI8Group + 64;
// Bytes of one block of kI8TileRows rows: 16 K weights and 16 K / 128 scales.
constexpr int64_t I8BlockBytes(int64_t k) { return k / kI8Group * kI8GroupBytes; }
// Whether an int8 matrix of rows_each rows (per expert) and K columns fits the block layout: the
// AVX-512 tiles run (MatVecIsa() is kAvx512 or kAmx), rows come in whole blocks and K in whole
// groups (every ZAYA1-8B matrix but the router's last layer, E + 1 = 17 rows, fits).
bool I8BlocksFit(int64_t rows_each, int64_t k);
// Writes rows [0, n) of w [n, K] with their scales [n, K / 128] into dst (n / 16 blocks of
// I8BlockBytes(K) bytes) in the block layout; n % 16 == 0, K % 128 == 0, dst overlaps neither.
// Requires I8BlocksFit.
void PackI8Blocks(const int8_t* w, const float* scales, int64_t n, int64_t k, uint8_t* dst);

inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// Attention over one block of the paged KV cache, SIMD per ISA clone: n rows of hd values,
// `stride` elements apart (f32, bf16, or int8 before the rows' scales, which the caller applies).
// DotRows: out[p] = q . row_p (sums reassociated into SIMD
// lanes). AxpyRows: acc += sum_p w[p] * row_p, four rows per pass. One call per block, not per
// position: per-position calls cost more than their 128 multiply-adds.
void DotRows(const float* q, const float* rows, int64_t stride, int64_t n, int64_t hd, float* out);
void DotRows(const float* q, const uint16_t* rows, int64_t stride, int64_t n, int64_t hd,
             float* out);
void AxpyRows(const float* w, const float* rows, int64_t stride, int64_t n, int64_t hd, float* acc);
void AxpyRows(const float* w, const uint16_t* rows, int64_t stride, int64_t n, int64_t hd,
              float* acc);
void DotRows(const float* q, const int8_t* rows, int64_t stride, int64_t n, int64_t hd, float* out);
void AxpyRows(const float* w, const int8_t* rows, int64_t stride, int64_t n, int64_t hd,
              float* acc);
// One int8 KV-cache row (one position's values of one KV head): scale = max |x| / 127 and q[j] =
// x[j] 127 / max |x| rounded to the nearest integer (ties to even), so that |scale q[j] - x[j]| is
// at most scale / 2 plus a rounding of the float steps. A row of zeros gets scale 0; a row with a
// NaN or an infinity gets a non-finite scale and zero bytes, so that its products stay non-finite.
void QuantizeKvRow(const float* x, int64_t n, int8_t* q, float* scale);
// s[i] = exp(s[i] - shift) for i < n (shift >= every s[i]), SIMD; returns their sum (reassociated
// into SIMD lanes).
float ExpShifted(float* s, int64_t n, float shift);
// out[i] = silu(g[i]) * u[i] for i < n (the MoE's SwiGLU), SIMD per ISA clone, with exp to within
// ~1e-7 relative. std::exp per element (the tiles' scalar activation then) cost ~20 us per ZAYA1
// token on one core; this gained the 8B shape's 512-token prefill 3-4% (docs/performance.md,
// session 12). out may alias g or u.
void SiluMul(const float* g, const float* u, int64_t n, float* out);

// Converts row n of W into f32 (length K), from any layout.
void RowToF32(const Weights& w, int64_t n, int64_t k, float* out);

enum class Act { kNone = 0, kGelu = 1, kSilu = 2 };

// Which matvec tiles MatVecRows runs for bf16 and int8 weights:
//   kAvx512: kernels_avx512.h, bf16 through vdpbf16ps (x rounded to bf16) and int8 through VNNI
//            vpdpbusd (x rounded to 8 bits per 32-column block). Needs AVX-512 F/BW/VL/DQ +
//            BF16 + VNNI.
//   kAvx2:   the AVX2+FMA tiles of kernels_avx2.h (x stays f32 for bf16; int16 for int8).
//   kPortable: the vector-extension tiles below (GCC target_clones: AVX-512 / AVX2 / baseline).
//   kAmx:    the AVX-512 tiles, and bf16 weights in the tile layout through AMX (kernels_amx.h)
//            at every batch; where the CPU has AMX-TILE + AMX-BF16 and the kernel grants the
//            process the tile data.
// The best the CPU has, capped by the environment variable ZAYA_CPU_ISA=portable|avx2|avx512|amx
// so that tests and benchmarks can compare them on one machine. Read once per process.
enum class Isa { kPortable = 0, kAvx2 = 1, kAvx512 = 2, kAmx = 3 };
Isa MatVecIsa();
const char* IsaName(Isa isa);
// Empty, or why ZAYA_CPU_ISA was not understood (the cap is then ignored).
const char* IsaEnvError();
// Whether the AVX-512 tiles add their far `prefetchnta` to each weight stream (tile_driver.h
// FarFetch::kNta, kernels_avx512.cc I8Blocks::kFarBytes): on AMD CPUs only. Tuned on Zen 5, where
// it gained several-token tiles 1-10%; on the Intel Xeon of session 20 it cut them to a third
// (docs/performance.md). Read once per process.
bool FarNtaFetch();
// Empty, or why a CPU with the AVX-512 tiles runs no AMX although no cap forbade it (no AMX, or
// the kernel refused the tile data).
const char* AmxNote();

// Rows [r0, r1) of y[T,N] = act(x[T,K] W^T + bias) on the calling thread, with the SIMD tiles.
// A row's output is bitwise independent of t (the same sum order for every tile shape).
void MatVecRows(const Weights& w, int64_t r0, int64_t r1, int64_t k, const float* x, int64_t t,
                int64_t n, const float* bias, Act act, float* y);

// Below this many tokens MatMul streams each weight row once through the matvec tiles (and a
// row's output is independent of the batch); from it on, OpenBLAS GEMM on converted panels,
// except where TilesAtEveryBatch(w).
constexpr int64_t kGemmMinTokens = 64;
// True where MatMul runs w through the tiles at every T, prefill included: bf16 and int8 weights
// on the AVX-512 tiles (or AMX), which do more multiply-adds per cycle than OpenBLAS's f32 FMAs
// (vdpbf16ps twice, vpdpbusd four times) and need no f32 copy of each panel. Session 12, small
// shape, 512-token prefill: bf16 403 -> 631 tok/s, int8 381-392 -> 717-726 (docs/performance.md).
// A row's output is then bitwise independent of the batch at any T, so a decode token's logits
// do not change when a step also carries a long prompt chunk.
bool TilesAtEveryBatch(const Weights& w);

// One of several matmuls on the same x: y[T,N] = act(x W^T + bias).
struct MatVecJob {
  Weights w;
  int64_t n = 0;
  const float* bias = nullptr;
  Act act = Act::kNone;
  float* y = nullptr;
};

// Runs `count` matmuls that share x[T,K] through the matvec tiles as one parallel region over all
// their rows (MatMul's small-batch path is this with one job), after x's forms for the tiles
// (from 32 tokens on also on all threads, a region of their own). y must not overlap x.
void MatVecShared(ThreadPool& pool, const float* x, int64_t t, int64_t k, const MatVecJob* jobs,
                  int64_t count);

// y[T,N] = act(x[T,K] W^T + bias). ldx / ldy are row strides in elements.
void MatMul(ThreadPool& pool, const float* x, int64_t t, int64_t k, const Weights& w, int64_t n,
            const float* bias, Act act, float* y);

void RmsNorm(ThreadPool& pool, const float* x, const float* w_f32, const uint16_t* w_bf16,
             int64_t t, int64_t n, float eps, float* y);
// The residual merge, in place on h [T, N]: h = (x + bh) * sh + (h + br) * sr, per column vectors
// of N; rows split between the pool's threads.
void MergeRows(ThreadPool& pool, const float* x, const float* bh, const float* sh, const float* br,
               const float* sr, int64_t t, int64_t n, float* h);
// out[T, N] = a + b * s (s per column); out may alias a or b.
void MulAddRows(const float* a, const float* b, const float* s, int64_t t, int64_t n, float* out);
// One CCA head in place (x [n]): scaled to L2 norm `target` (the norm at least eps, its sum of
// squares in double), then rotated by RoPE over its first rope_dims values (pairs i, i + half with
// cos cs[i], sin sn[i]).
void L2ScaleRope(float* x, int64_t n, float target, float eps, int64_t rope_dims, const float* cs,
                 const float* sn);

// v[i] = act(v[i]) for i < n, SIMD per ISA clone: within 1e-6 relative of the activation in
// double (more in GELU's far negative tail, see kernels.cc), and the same value for an element
// wherever it sits in v. Matmuls apply their activation with it after the tiles, which compute
// x W^T + bias only.
void ApplyActInPlace(Act act, float* v, int64_t n);

}  // namespace zaya::cpu
