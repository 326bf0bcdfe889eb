// HIP kernels of the backend ops (contracts in plugins/include/zaya/backend.h, reference
// arithmetic in backends/cpu). Compiled by hipcc for AMD, by nvcc (-x cu) for NVIDIA and by the
// host compiler for the emulator (gpu_port.h); it therefore uses only the dialect gpu_port.h lists.
//
// Every kernel runs kThreads threads per block, and reduces through shared memory or WarpSumXor
// called by all lanes of a warp; no thread leaves a kernel early, so every __syncthreads() and
// warp reduction is reached by all threads of the block.
#include <math.h>

#include "kernels.h"

namespace zaya::hip {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / gpu::kWarp;
constexpr int kSplitK = 2;                       // matvec: warps sharing one output row
constexpr int kRowsPerBlock = kWarps / kSplitK;  // matvec rows per block
constexpr int kMatVecChunk = 16;  // tokens per matvec pass (register accumulators per lane)
constexpr int kAttnPos = 4;     // attention: positions a warp scores together
constexpr int kUnroll = 4;      // weight loads a lane has in flight in the streaming kernels
constexpr int kTile = 64;         // tiled matmul: 64 tokens x 64 output rows per block
constexpr int kTileK = 16;

// 16-byte loads: 8 bf16 weights, 4 floats (one vector load on both GPU targets).
struct alignas(16) Pack16 {
  uint32_t v[4];
};
struct alignas(16) Float4 {
  float v[4];
};

int64_t Blocks(int64_t n, int64_t per) { return (n + per - 1) / per; }
unsigned GridStrideBlocks(int64_t n) {
  const int64_t b = Blocks(n, kThreads);
  return static_cast<unsigned>(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

__device__ __forceinline__ float Bf16ToF32(uint16_t v) {
  return gpu::BitsToFloat(static_cast<uint32_t>(v) << 16);
}

__device__ __forceinline__ uint16_t F32ToBf16(float f) {
  uint32_t bits = gpu::FloatToBits(f);
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even, like the CPU backend
  return static_cast<uint16_t>(bits >> 16);
}

__device__ __forceinline__ float LoadVec(const DevVec& v, int64_t i, float absent) {
  if (v.data == nullptr) return absent;
  if (v.dtype == kBF16) return Bf16ToF32(static_cast<const uint16_t*>(v.data)[i]);
  return static_cast<const float*>(v.data)[i];
}

// W[row, col] of a [rows, k] matrix, widened to f32.
__device__ __forceinline__ float LoadW(const DevWeights& w, int64_t row, int64_t col, int64_t k) {
  const int64_t at = row * k + col;
  if (w.dtype == kBF16) return Bf16ToF32(static_cast<const uint16_t*>(w.data)[at]);
  if (w.dtype == kI8) {
    // backend.h's zaya_i8_scales, spelled out: a host function cannot be called here.
    return static_cast<float>(static_cast<const int8_t*>(w.data)[at]) *
           w.scales[row * ((k + ZAYA_I8_BLOCK - 1) / ZAYA_I8_BLOCK) + col / ZAYA_I8_BLOCK];
  }
  return static_cast<const float*>(w.data)[at];
}

// 8 bf16 weights (one 16-byte load) dotted with 8 floats (two 16-byte loads at xv).
__device__ __forceinline__ float PackDot(const Pack16& pk, const Float4* xv) {
  const Float4 x0 = xv[0], x1 = xv[1];
  return gpu::BitsToFloat(pk.v[0] << 16) * x0.v[0] +
         gpu::BitsToFloat(pk.v[0] & 0xffff0000u) * x0.v[1] +
         gpu::BitsToFloat(pk.v[1] << 16) * x0.v[2] +
         gpu::BitsToFloat(pk.v[1] & 0xffff0000u) * x0.v[3] +
         gpu::BitsToFloat(pk.v[2] << 16) * x1.v[0] +
         gpu::BitsToFloat(pk.v[2] & 0xffff0000u) * x1.v[1] +
         gpu::BitsToFloat(pk.v[3] << 16) * x1.v[2] +
         gpu::BitsToFloat(pk.v[3] & 0xffff0000u) * x1.v[3];
}

// One lane's share of the dot product of weight row `row` ([rows, k]) with x[0..k): lanes take
// interleaved slices and the caller reduces over the warp. bf16 rows of a multiple of 8 values on
// 16-byte boundaries go 8 weights (16 bytes) per load, kUnroll loads in flight (see
// MatVecKernel), else one element per load.
__device__ __forceinline__ float LaneRowDot(const DevWeights& w, int64_t row, const float* x,
                                            int64_t k, int lane) {
  float acc = 0.f;
  if (w.dtype == kBF16 && k % 8 == 0 && (reinterpret_cast<uintptr_t>(w.data) & 15) == 0 &&
      (reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    const auto* wrow =
        reinterpret_cast<const Pack16*>(static_cast<const uint16_t*>(w.data) + row * k);
    const auto* xv = reinterpret_cast<const Float4*>(x);
    const int64_t packs = k / 8;
    int64_t c8 = lane;
    for (; c8 + (kUnroll - 1) * gpu::kWarp < packs; c8 += kUnroll * gpu::kWarp) {
      Pack16 pk[kUnroll];
      ZAYA_UNROLL for (int u = 0; u < kUnroll; ++u) pk[u] = wrow[c8 + u * gpu::kWarp];
      ZAYA_UNROLL for (int u = 0; u < kUnroll; ++u) {
        acc += PackDot(pk[u], xv + 2 * (c8 + u * gpu::kWarp));
      }
    }
    for (; c8 < packs; c8 += gpu::kWarp) acc += PackDot(wrow[c8], xv + 2 * c8);
    return acc;
  }
  for (int64_t c = lane; c < k; c += gpu::kWarp) acc += LoadW(w, row, c, k) * x[c];
  return acc;
}

__device__ __forceinline__ float Activate(float v, int act) {
  if (act == 1) return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
  if (act == 2) return v / (1.f + expf(-v));
  return v;
}

// Block-wide reductions over kThreads values; every thread gets the result. `red` is a shared
// array of kThreads floats, free again when the function returns. BlockSum reduces each warp with
// shuffles and then the kWarps partials in warp order: two barriers where a shared-memory tree
// took eighteen (RmsNorm, a single block per row at decode, took ~5 us on an H100).
__device__ float BlockSum(float v, float* red) {
  v = gpu::WarpSumXor(v);
  if (threadIdx.x % gpu::kWarp == 0) red[threadIdx.x / gpu::kWarp] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < kWarps; ++w) r += red[w];
  __syncthreads();
  return r;
}

__device__ float BlockMax(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) {
      red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    }
    __syncthreads();
  }
  const float r = red[0];
  __syncthreads();
  return r;
}

// ---- embed, rmsnorm, elementwise ----

__global__ void __launch_bounds__(kThreads)
    EmbedKernel(const int32_t* ids, DevWeights table, int64_t h, DevVec bias, DevVec scale,
                float* out) {
  const int64_t i = blockIdx.x;
  const int64_t id = ids[i];
  for (int64_t j = threadIdx.x; j < h; j += kThreads) {
    out[i * h + j] = (LoadW(table, id, j, h) + LoadVec(bias, j, 0.f)) * LoadVec(scale, j, 1.f);
  }
}

__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, DevVec w, int64_t n, float eps, float* y) {
  __shared__ float red[kThreads];
  const float* xi = x + static_cast<int64_t>(blockIdx.x) * n;
  float* yi = y + static_cast<int64_t>(blockIdx.x) * n;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) ss += xi[j] * xi[j];
  ss = BlockSum(ss, red);
  const float inv = 1.f / sqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t j = threadIdx.x; j < n; j += kThreads) yi[j] = xi[j] * inv * LoadVec(w, j, 1.f);
}

__global__ void __launch_bounds__(kThreads)
    MulAddKernel(const float* a, const float* b, DevVec s, int64_t total, int64_t n, float* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += stride) {
    out[i] = a[i] + b[i] * LoadVec(s, i % n, 1.f);
  }
}

__global__ void __launch_bounds__(kThreads)
    MergeKernel(const float* x, DevVec bh, DevVec sh, DevVec br, DevVec sr, int64_t total,
                int64_t n, float* h) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += stride) {
    const int64_t j = i % n;
    h[i] = (x[i] + LoadVec(bh, j, 0.f)) * LoadVec(sh, j, 1.f) +
           (h[i] + LoadVec(br, j, 0.f)) * LoadVec(sr, j, 1.f);
  }
}

// MergeKernel then RmsNormKernel on one row per block, with the same arithmetic in the same order
// (each thread owns the same elements as in RmsNormKernel, and BlockSum reduces them alike).
__global__ void __launch_bounds__(kThreads)
    MergeNormKernel(const float* x, DevVec bh, DevVec sh, DevVec br, DevVec sr, int64_t n,
                    float* h, DevVec w, float eps, float* y) {
  __shared__ float red[kThreads];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * n;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const float v = (x[row + j] + LoadVec(bh, j, 0.f)) * LoadVec(sh, j, 1.f) +
                    (h[row + j] + LoadVec(br, j, 0.f)) * LoadVec(sr, j, 1.f);
    h[row + j] = v;
    ss += v * v;
  }
  ss = BlockSum(ss, red);
  const float inv = 1.f / sqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    y[row + j] = h[row + j] * inv * LoadVec(w, j, 1.f);
  }
}

// ---- matmul ----

// acc[j] += pack . x[t0 + j, 8 c8 .. 8 c8 + 8) for the nt tokens of a matvec pass.
template <int kChunk>
__device__ __forceinline__ void MatVecPack(const Pack16& pk, const float* x, int64_t t0,
                                           int64_t nt, int64_t k, int64_t c8,
                                           float (&acc)[kChunk]) {
  float wv[8];
  for (int e = 0; e < 4; ++e) {
    wv[2 * e] = gpu::BitsToFloat(pk.v[e] << 16);
    wv[2 * e + 1] = gpu::BitsToFloat(pk.v[e] & 0xffff0000u);
  }
  for (int j = 0; j < kChunk; ++j) {
    if (j < nt) {
      const auto* xv = reinterpret_cast<const Float4*>(x + (t0 + j) * k + c8 * 8);
      const Float4 x0 = xv[0], x1 = xv[1];
      acc[j] += wv[0] * x0.v[0] + wv[1] * x0.v[1] + wv[2] * x0.v[2] + wv[3] * x0.v[3] +
                wv[4] * x1.v[0] + wv[5] * x1.v[1] + wv[6] * x1.v[2] + wv[7] * x1.v[3];
    }
  }
}

// The jobs of one matvec launch: job j owns blocks first_block[j] .. first_block[j + 1].
struct MatVecJobs {
  MatVecJob job[kMaxMatVecJobs];
  int64_t first_block[kMaxMatVecJobs + 1];
  int32_t count;
  int32_t unused;
};

// Few tokens (decode): kSplitK warps share an output row, each streaming its part of it once and
// dotting it with up to kChunk tokens (1, 4 or kMatVecChunk: the smallest that holds the pass, so
// that one token does not pay sixteen tokens' registers); lanes split their slice, WarpSumXor
// combines a warp, shared memory the slices in a fixed order. Each token's sum is formed the same
// way whatever the batch, so batched and single-sequence decode agree exactly. Splitting K puts 2x
// more warps (and loads) in flight: decode matrices are 0.1-4 MB, too few rows for one warp each
// to hide memory latency. Measured on an H100 (8B shape, interleaved runs): batch 16 +24%, batch 8
// +15%, batch 1 -4%; population decode is what RSA runs, so the split stays. One launch serves up
// to kMaxMatVecJobs matrices that read the same x (MatVecJobs).
template <int kChunk>
__global__ void __launch_bounds__(kThreads)
    MatVecKernel(const float* x, int64_t t0, int64_t nt, int64_t k, MatVecJobs jobs) {
  const int lane = static_cast<int>(threadIdx.x) % gpu::kWarp;
  const int warp = static_cast<int>(threadIdx.x) / gpu::kWarp;
  const int slice = warp % kSplitK, local = warp / kSplitK;
  int jb = 0;  // the same for the whole block
  while (jb + 1 < jobs.count && static_cast<int64_t>(blockIdx.x) >= jobs.first_block[jb + 1]) ++jb;
  const DevWeights w = jobs.job[jb].w;
  const DevVec bias = jobs.job[jb].bias;
  const int64_t n = jobs.job[jb].n;
  const int act = jobs.job[jb].act;
  float* y = jobs.job[jb].y;
  const int64_t block = static_cast<int64_t>(blockIdx.x) - jobs.first_block[jb];
  const int64_t row = block * kRowsPerBlock + local;
  __shared__ float part[kRowsPerBlock][kSplitK][kChunk];
  float acc[kChunk];
  for (int j = 0; j < kChunk; ++j) acc[j] = 0.f;
  // bf16 rows of a multiple of 8 values on 16-byte boundaries: each lane loads 8 weights (16
  // bytes) at a time, so a warp moves 512 contiguous bytes per load instead of 64.
  const bool wide = w.dtype == kBF16 && k % 8 == 0 &&
                    (reinterpret_cast<uintptr_t>(w.data) & 15) == 0 &&
                    (reinterpret_cast<uintptr_t>(x) & 15) == 0;
  if (row < n && wide) {
    const auto* wrow =
        reinterpret_cast<const Pack16*>(static_cast<const uint16_t*>(w.data) + row * k);
    const int64_t packs = k / 8;
    constexpr int64_t kStep = gpu::kWarp * kSplitK;
    int64_t c8 = slice * gpu::kWarp + lane;
    // kUnroll 16-byte weight loads are issued before the first multiply: with one load in
    // flight per lane, a warp waited a full memory latency per 512 bytes (the tied head ran at
    // ~0.9 TB/s on an H100). The packs are still summed in ascending order, as before.
    for (; c8 + (kUnroll - 1) * kStep < packs; c8 += kUnroll * kStep) {
      Pack16 pk[kUnroll];
      ZAYA_UNROLL for (int u = 0; u < kUnroll; ++u) pk[u] = wrow[c8 + u * kStep];
      ZAYA_UNROLL for (int u = 0; u < kUnroll; ++u) {
        MatVecPack(pk[u], x, t0, nt, k, c8 + u * kStep, acc);
      }
    }
    for (; c8 < packs; c8 += kStep) MatVecPack(wrow[c8], x, t0, nt, k, c8, acc);
  } else if (row < n) {
    for (int64_t c = slice * gpu::kWarp + lane; c < k; c += gpu::kWarp * kSplitK) {
      const float wv = LoadW(w, row, c, k);
      for (int j = 0; j < kChunk; ++j) {
        if (j < nt) acc[j] += wv * x[(t0 + j) * k + c];
      }
    }
  }
  for (int j = 0; j < kChunk; ++j) {
    if (j >= nt) break;  // nt is the same for the whole block, so every lane leaves together
    const float s = gpu::WarpSumXor(acc[j]);
    if (lane == 0) part[local][slice][j] = s;
  }
  __syncthreads();
  const int64_t cell = threadIdx.x;
  if (cell < kRowsPerBlock * nt) {
    const int64_t r_local = cell / nt, j = cell % nt;
    const int64_t r = block * kRowsPerBlock + r_local;
    if (r < n) {
      float s = 0.f;
      for (int sl = 0; sl < kSplitK; ++sl) s += part[r_local][sl][j];
      y[(t0 + j) * n + r] = Activate(s + LoadVec(bias, r, 0.f), act);
    }
  }
}

// Many tokens (prefill): 64x64 output tiles, K in steps of 16 staged in shared memory (weights
// widened to f32 on the way in); each thread owns a 4x4 block of outputs.
__global__ void __launch_bounds__(kThreads)
    GemmKernel(const float* x, int64_t t, int64_t k, DevWeights w, int64_t n, DevVec bias, int act,
               float* y) {
  __shared__ float xs[kTileK][kTile + 1];
  __shared__ float ws[kTileK][kTile + 1];
  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
  const int64_t n_base = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t t_base = static_cast<int64_t>(blockIdx.y) * kTile;
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
    for (int l = static_cast<int>(threadIdx.x); l < kTile * kTileK; l += kThreads) {
      const int r = l / kTileK, c = l % kTileK;
      const int64_t kk = k0 + c;
      const int64_t tt = t_base + r, nn = n_base + r;
      xs[c][r] = (tt < t && kk < k) ? x[tt * k + kk] : 0.f;
      ws[c][r] = (nn < n && kk < k) ? LoadW(w, nn, kk, k) : 0.f;
    }
    __syncthreads();
    for (int c = 0; c < kTileK; ++c) {
      float a[4], b[4];
      for (int i = 0; i < 4; ++i) {
        a[i] = xs[c][ty * 4 + i];
        b[i] = ws[c][tx * 4 + i];
      }
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t tt = t_base + ty * 4 + i;
    for (int j = 0; j < 4; ++j) {
      const int64_t nn = n_base + tx * 4 + j;
      if (tt < t && nn < n) y[tt * n + nn] = Activate(acc[i][j] + LoadVec(bias, nn, 0.f), act);
    }
  }
}

// ---- CCA ----

// The run (sequence) a token belongs to: run_begin is ascending, run_begin[runs] == T.
__device__ __forceinline__ int64_t RunOf(const CcaArgs& a, int64_t i) {
  int64_t lo = 0, hi = a.runs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (a.run_begin[mid] <= i) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Raw conv input s = [q0 | k0] of channel ch for the token `back` steps before token i of run r:
// from this step's tokens when the run has them, else from the slot's conv state [s_{-2}, s_{-1}].
__device__ __forceinline__ float CcaInput(const CcaArgs& a, int64_t r, int64_t i, int64_t back,
                                          int64_t ch, int64_t qd, int64_t kd, int64_t c) {
  const int64_t p = i - a.run_begin[r] - back;  // index within the run; < 0: before this step
  if (p >= 0) {
    const int64_t t = a.run_begin[r] + p;
    return ch < qd ? a.q0[t * qd + ch] : a.k0[t * kd + ch - qd];
  }
  return a.conv_state[static_cast<int64_t>(a.run_slot[r]) * 2 * c + (2 + p) * c + ch];
}

// The CCA kernels run every token in parallel: a token's conv input is the raw [q0 | k0] of itself
// and the two before it, known before the step starts (the state holds raw inputs, not outputs),
// so only the state update (CcaStateKernel, last) is ordered. Three passes keep the SMs busy even
// for one token: at batch 1 a single (token, head) block doing its whole head took 71 us on an
// H100, latency-bound on its 128 x 256 conv weights.

// Depthwise conv at t-1 and t for every (token, channel): work[0] and work[1], [T, C] each.
__global__ void __launch_bounds__(kThreads) CcaDepthwiseKernel(CcaArgs a) {
  const int64_t qd = a.nh * a.hd, kd = a.nkv * a.hd, c = qd + kd, n = a.tokens * c;
  float* d_prev = a.work;
  float* d_cur = a.work + n;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t i = idx / c, ch = idx % c;
    const int64_t r = RunOf(a, i);
    const float s2 = CcaInput(a, r, i, 2, ch, qd, kd, c), s1 = CcaInput(a, r, i, 1, ch, qd, kd, c),
                s0 = CcaInput(a, r, i, 0, ch, qd, kd, c);
    const float w0 = LoadVec(a.dw, ch * 2, 0.f), w1 = LoadVec(a.dw, ch * 2 + 1, 0.f);
    const float b = LoadVec(a.db, ch, 0.f);
    d_prev[idx] = w0 * s2 + w1 * s1 + b;
    d_cur[idx] = w0 * s1 + w1 * s0 + b;
  }
}

// Grouped conv: one warp per (token, output channel), lanes over the row's 2*hd contiguous
// weights (coalesced); work[2] = g, [T, C].
__global__ void __launch_bounds__(kThreads) CcaGroupedKernel(CcaArgs a) {
  const int64_t qd = a.nh * a.hd, kd = a.nkv * a.hd, c = qd + kd, hd = a.hd;
  const int64_t i = blockIdx.x;
  const int lane = static_cast<int>(threadIdx.x) % gpu::kWarp;
  const int64_t o = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / gpu::kWarp;
  const float* d_prev = a.work + i * c;
  const float* d_cur = a.work + a.tokens * c + i * c;
  float acc = 0.f;
  if (o < c) {
    const int64_t base = (o / hd) * hd, row = o * hd * 2;
    for (int64_t e = lane; e < 2 * hd; e += gpu::kWarp) {
      acc += LoadVec(a.gw, row + e, 0.f) * ((e & 1) ? d_cur[base + e / 2] : d_prev[base + e / 2]);
    }
  }
  acc = gpu::WarpSumXor(acc);
  if (lane == 0 && o < c) a.work[2 * a.tokens * c + i * c + o] = acc + LoadVec(a.gb, o, 0.f);
}

// Per (token, head): pre-conv residuals on the grouped conv's output, L2 norm (k times temp),
// RoPE; head 0's block also writes the token's values [vcur_t | vdel_{t-1}].
__global__ void __launch_bounds__(kThreads) CcaTokenKernel(CcaArgs a) {
  const int64_t nh = a.nh, nkv = a.nkv, hd = a.hd;
  const int64_t qd = nh * hd, kd = nkv * hd, c = qd + kd, vh = kd / 2;
  const int64_t q_per_kv = nh / nkv, half = a.rope_dims / 2;
  const int64_t i = blockIdx.x, hh = blockIdx.y, base = hh * hd;
  const int tid = static_cast<int>(threadIdx.x);
  __shared__ float val[kMaxHeadDim];
  __shared__ float red[kThreads];
  const int64_t r = RunOf(a, i);
  const float* g = a.work + 2 * a.tokens * c + i * c + base;
  for (int64_t j = tid; j < hd; j += kThreads) val[j] = g[j];
  __syncthreads();
  // Pre-conv residuals of this token's raw projections.
  float ss = 0.f;
  for (int64_t j = tid; j < hd; j += kThreads) {
    float res;
    if (hh < nh) {
      const int64_t kvh = hh / q_per_kv;
      res = 0.5f * (a.q0[i * qd + hh * hd + j] + a.k0[i * kd + kvh * hd + j]);
    } else {
      const int64_t hk = hh - nh;
      float mean_q = 0.f;
      for (int64_t m = 0; m < q_per_kv; ++m) mean_q += a.q0[i * qd + (hk * q_per_kv + m) * hd + j];
      mean_q /= static_cast<float>(q_per_kv);
      res = 0.5f * (mean_q + a.k0[i * kd + hk * hd + j]);
    }
    val[j] += res;
    ss += val[j] * val[j];
  }
  ss = BlockSum(ss, red);
  const float norm = fmaxf(sqrtf(ss), a.eps);
  const float f =
      (hh < nh ? 1.f : LoadVec(a.temp, hh - nh, 1.f)) * sqrtf(static_cast<float>(hd)) / norm;
  float* out = hh < nh ? a.q + i * qd + hh * hd : a.k + i * kd + (hh - nh) * hd;
  const int32_t pos = a.position[i];
  for (int64_t j = tid; j < hd; j += kThreads) {
    if (j < half) {
      const double inv_freq =
          pow(static_cast<double>(a.theta), -2.0 * static_cast<double>(j) / a.rope_dims);
      const double angle = static_cast<double>(pos) * inv_freq;
      const float cs_ = static_cast<float>(cos(angle)), sn = static_cast<float>(sin(angle));
      const float x0 = val[j] * f, x1 = val[j + half] * f;
      out[j] = x0 * cs_ - x1 * sn;
      out[j + half] = x1 * cs_ + x0 * sn;
    } else if (j >= a.rope_dims) {
      out[j] = val[j] * f;
    }  // half <= j < rope_dims: written by the thread that owns j - half
  }
  if (hh == 0) {
    // Values: [vcur_t | vdel_{t-1}], the previous token's from the run or the slot's state.
    float* v = a.v + i * kd;
    const bool first = i == a.run_begin[r];
    for (int64_t j = tid; j < vh; j += kThreads) {
      v[j] = a.vcur[i * vh + j];
      v[vh + j] = first ? a.v_state[static_cast<int64_t>(a.run_slot[r]) * vh + j]
                        : a.vdel[(i - 1) * vh + j];
    }
  }
}

// After every token of the step has read the old state: each run's slot keeps its last two raw
// inputs (the older one from the old state when the run has a single token) and its last vdel.
__global__ void __launch_bounds__(kThreads) CcaStateKernel(CcaArgs a) {
  const int64_t qd = a.nh * a.hd, kd = a.nkv * a.hd, c = qd + kd, vh = kd / 2;
  const int64_t r = blockIdx.x;
  const int64_t begin = a.run_begin[r], last = a.run_begin[r + 1] - 1;
  if (last < begin) return;  // empty run: uniform across the block, no barrier follows
  float* cs = a.conv_state + static_cast<int64_t>(a.run_slot[r]) * 2 * c;
  for (int64_t ch = threadIdx.x; ch < c; ch += kThreads) {
    const float older =
        last > begin ? (ch < qd ? a.q0[(last - 1) * qd + ch] : a.k0[(last - 1) * kd + ch - qd])
                     : cs[c + ch];
    cs[ch] = older;
    cs[c + ch] = ch < qd ? a.q0[last * qd + ch] : a.k0[last * kd + ch - qd];
  }
  float* vs = a.v_state + static_cast<int64_t>(a.run_slot[r]) * vh;
  for (int64_t j = threadIdx.x; j < vh; j += kThreads) vs[j] = a.vdel[last * vh + j];
}

// ---- attention ----

__device__ __forceinline__ int64_t CacheRow(const AttentionArgs& a, int64_t seq, int64_t pos) {
  const int64_t block = a.block_table[seq * a.max_blocks + pos / a.bt];
  return (block * a.bt + pos % a.bt) * a.nkv * a.hd;
}

// An int8 row's scale: row `at` (CacheRow + kvh * hd) of the cache is scale row at / hd.
__device__ __forceinline__ float RowScale(const float* scale, int kind, int64_t at, int64_t hd) {
  return kind == kCacheI8 ? scale[at / hd] : 1.f;
}

// One int8 row of n values at x into q and *scale (backend.h): max |x| / 127 and x 127 / max |x|
// rounded to nearest even; zeros give scale 0, a non-finite value a NaN scale and zero bytes.
__device__ void QuantizeRow(const float* x, int64_t n, int8_t* q, float* scale, float* red) {
  float amax = 0.f, bad = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    amax = fmaxf(amax, fabsf(x[j]));
    bad += isfinite(x[j]) ? 0.f : 1.f;
  }
  amax = BlockMax(amax, red);
  bad = BlockSum(bad, red);
  const bool zero = bad > 0.f || amax == 0.f;
  const float inv = zero ? 0.f : 127.f / amax;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    q[j] = static_cast<int8_t>(zero ? 0.f : fminf(fmaxf(rintf(x[j] * inv), -127.f), 127.f));
  }
  if (threadIdx.x == 0) *scale = bad > 0.f ? NAN : amax / 127.f;
}

__global__ void __launch_bounds__(kThreads) AppendKvKernel(AttentionArgs a) {
  __shared__ float red[kThreads];
  const int64_t i = blockIdx.x, row = a.nkv * a.hd;
  const int64_t at = CacheRow(a, a.seq_of_token[i], a.position[i]);
  if (a.cache == kCacheI8) {
    for (int64_t h = 0; h < a.nkv; ++h) {
      const int64_t r = at + h * a.hd;
      QuantizeRow(a.k + i * row + h * a.hd, a.hd, static_cast<int8_t*>(a.k_cache) + r,
                  a.k_scale + r / a.hd, red);
      QuantizeRow(a.v + i * row + h * a.hd, a.hd, static_cast<int8_t*>(a.v_cache) + r,
                  a.v_scale + r / a.hd, red);
    }
    return;
  }
  for (int64_t j = threadIdx.x; j < row; j += kThreads) {
    const float kv = a.k[i * row + j], vv = a.v[i * row + j];
    if (a.cache == kCacheBf16) {
      static_cast<uint16_t*>(a.k_cache)[at + j] = F32ToBf16(kv);
      static_cast<uint16_t*>(a.v_cache)[at + j] = F32ToBf16(vv);
    } else {
      static_cast<float*>(a.k_cache)[at + j] = kv;
      static_cast<float*>(a.v_cache)[at + j] = vv;
    }
  }
}

// A cache value of kind kCache (a template argument, so that a block's loads carry no per-element
// branch and can all be in flight at once); int8 before its row's scale.
template <int kCache>
__device__ __forceinline__ float CacheValue(const void* cache, int64_t at) {
  if (kCache == kCacheBf16) return Bf16ToF32(static_cast<const uint16_t*>(cache)[at]);
  if (kCache == kCacheI8) return static_cast<float>(static_cast<const int8_t*>(cache)[at]);
  return static_cast<const float*>(cache)[at];
}

// One block per (token, head, chunk of kAttnChunk positions). Each warp takes kAttnPos positions
// of every tile of kWarps * kAttnPos and keeps its own online softmax; lanes split head_dim
// (lane + kWarp * c), so a warp reads a cache row as one coalesced run. The kAttnPos rows' K and V
// loads are all issued before the first use (positions past the chunk read a valid row and are
// masked), and the warps' partial results are merged in warp order at the end. With one chunk the
// block writes the output; with more, its partial softmax for AttendCombineKernel.
//
// It replaced one block per (token, head) with one position per thread: 8 blocks at batch 1 on a
// 132-SM H100, each thread's 128-step dot and 256-step value loop waiting on one load after
// another (the 8B shape decoded 18 tok/s at 2,048 positions).
template <int kCache>
__global__ void __launch_bounds__(kThreads) AttendKernel(AttentionArgs a) {
  constexpr int kLaneCh = (kMaxHeadDim + gpu::kWarp - 1) / gpu::kWarp;
  __shared__ float warp_m[kWarps];
  __shared__ float warp_l[kWarps];
  __shared__ float warp_acc[kWarps][kMaxHeadDim];
  const int64_t w = blockIdx.x;
  const int64_t i = w / a.nh, h = w % a.nh, kvh = h / (a.nh / a.nkv), hd = a.hd;
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % gpu::kWarp, warp = tid / gpu::kWarp;
  const int64_t seq = a.seq_of_token[i];
  const int64_t n_pos = static_cast<int64_t>(a.position[i]) + 1;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * kAttnChunk;
  const int64_t end = begin + kAttnChunk < n_pos ? begin + kAttnChunk : n_pos;
  float q[kLaneCh], acc[kLaneCh];
  for (int c = 0; c < kLaneCh; ++c) {
    const int64_t ch = lane + static_cast<int64_t>(c) * gpu::kWarp;
    q[c] = ch < hd ? a.q[(i * a.nh + h) * hd + ch] : 0.f;
    acc[c] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  // Every warp runs the same number of tiles (warp sums are block-wide in the emulator).
  for (int64_t p0 = begin; p0 < end; p0 += static_cast<int64_t>(kWarps) * kAttnPos) {
    int64_t at[kAttnPos];
    bool ok[kAttnPos];
    ZAYA_UNROLL for (int u = 0; u < kAttnPos; ++u) {
      const int64_t p = p0 + static_cast<int64_t>(warp) * kAttnPos + u;
      ok[u] = p < end;
      at[u] = CacheRow(a, seq, ok[u] ? p : begin) + kvh * hd;
    }
    float kr[kAttnPos][kLaneCh], vr[kAttnPos][kLaneCh];
    ZAYA_UNROLL for (int u = 0; u < kAttnPos; ++u) {
      ZAYA_UNROLL for (int c = 0; c < kLaneCh; ++c) {
        const int64_t ch = lane + static_cast<int64_t>(c) * gpu::kWarp;
        kr[u][c] = ch < hd ? CacheValue<kCache>(a.k_cache, at[u] + ch) : 0.f;
        vr[u][c] = ch < hd ? CacheValue<kCache>(a.v_cache, at[u] + ch) : 0.f;
      }
    }
    float s[kAttnPos];
    float mx = m;
    ZAYA_UNROLL for (int u = 0; u < kAttnPos; ++u) {
      float d = 0.f;
      ZAYA_UNROLL for (int c = 0; c < kLaneCh; ++c) d += q[c] * kr[u][c];
      d = gpu::WarpSumXor(d);
      s[u] = ok[u] ? d * RowScale(a.k_scale, kCache, at[u], hd) * a.scale : -INFINITY;
      mx = fmaxf(mx, s[u]);
    }
    if (mx == -INFINITY) continue;  // no position of this warp in the tile (uniform in the warp)
    const float corr = expf(m - mx);  // 0 while m is -inf
    l *= corr;
    ZAYA_UNROLL for (int c = 0; c < kLaneCh; ++c) acc[c] *= corr;
    ZAYA_UNROLL for (int u = 0; u < kAttnPos; ++u) {
      const float e = ok[u] ? expf(s[u] - mx) : 0.f;
      l += e;
      const float ev = e * RowScale(a.v_scale, kCache, at[u], hd);
      ZAYA_UNROLL for (int c = 0; c < kLaneCh; ++c) acc[c] += ev * vr[u][c];
    }
    m = mx;
  }
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
  for (int c = 0; c < kLaneCh; ++c) {
    const int64_t ch = lane + static_cast<int64_t>(c) * gpu::kWarp;
    if (ch < hd) warp_acc[warp][ch] = acc[c];
  }
  __syncthreads();
  if (tid < hd) {
    float mm = -INFINITY;
    for (int x = 0; x < kWarps; ++x) mm = fmaxf(mm, warp_m[x]);
    float num = 0.f, den = 0.f;
    for (int x = 0; x < kWarps; ++x) {
      if (warp_m[x] == -INFINITY) continue;  // a warp that saw no position
      const float f = expf(warp_m[x] - mm);
      num += warp_acc[x][tid] * f;
      den += warp_l[x] * f;
    }
    if (a.chunks == 1) {
      a.out[(i * a.nh + h) * hd + tid] = num / den;
    } else {
      // A chunk past this token's positions leaves m = -inf and l = 0: the combine skips it.
      float* part = a.partial + (w * a.chunks + blockIdx.y) * (hd + 2);
      part[tid] = num;
      if (tid == 0) {
        part[hd] = mm;
        part[hd + 1] = den;
      }
    }
  }
}

// out = the chunks' partial softmaxes merged in chunk order (one block per token and head).
__global__ void __launch_bounds__(kThreads) AttendCombineKernel(AttentionArgs a) {
  const int64_t w = blockIdx.x, hd = a.hd;
  const float* part = a.partial + w * a.chunks * (hd + 2);
  for (int64_t j = threadIdx.x; j < hd; j += kThreads) {
    float mm = -INFINITY;
    for (int64_t c = 0; c < a.chunks; ++c) mm = fmaxf(mm, part[c * (hd + 2) + hd]);
    float num = 0.f, den = 0.f;
    for (int64_t c = 0; c < a.chunks; ++c) {
      const float mc = part[c * (hd + 2) + hd];
      if (mc == -INFINITY) continue;
      const float f = expf(mc - mm);
      num += part[c * (hd + 2) + j] * f;
      den += part[c * (hd + 2) + hd + 1] * f;
    }
    a.out[w * hd + j] = num / den;
  }
}

// ---- router, MoE, gather ----

__global__ void __launch_bounds__(kThreads)
    RouterSelectKernel(const float* logits, DevVec bias, int64_t t, int64_t e1, int32_t* expert,
                       float* weight) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i < t) {
    const float* l = logits + i * e1;
    float mx = l[0];
    for (int64_t j = 1; j < e1; ++j) mx = fmaxf(mx, l[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < e1; ++j) sum += static_cast<double>(expf(l[j] - mx));
    int64_t best = 0;
    float best_v = -INFINITY, best_p = 0.f;
    for (int64_t j = 0; j < e1; ++j) {
      const float p = static_cast<float>(static_cast<double>(expf(l[j] - mx)) / sum);
      const float v = p + LoadVec(bias, j, 0.f);
      if (v > best_v) {  // strict: ties go to the lowest index, like torch.argmax
        best_v = v;
        best = j;
        best_p = p;
      }
    }
    expert[i] = static_cast<int32_t>(best);
    weight[i] = best_p;
  }
}

// hidden[t, j] = silu(gate_up[e_t][j] . x[t]) * (gate_up[e_t][I + j] . x[t]) for j < I: one warp
// per j computes both rows, so the activation needs no kernel of its own (grid x = token, y = row
// block).
__global__ void __launch_bounds__(kThreads) MoeGateUpKernel(MoeArgs a) {
  const int64_t i = blockIdx.x;
  const int lane = static_cast<int>(threadIdx.x) % gpu::kWarp;
  const int64_t rows = 2 * a.inter;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / gpu::kWarp;
  const int64_t e = a.expert[i];
  const bool in_range = e >= 0 && e <= a.e;
  const bool active = in_range && e < a.e && j < a.inter;
  if (!in_range && threadIdx.x == 0 && blockIdx.y == 0) *a.error_flag = a.error_code;
  float g = 0.f, u = 0.f;
  if (active) {
    g = LaneRowDot(a.gate_up, e * rows + j, a.x + i * a.h, a.h, lane);
    u = LaneRowDot(a.gate_up, e * rows + a.inter + j, a.x + i * a.h, a.h, lane);
  }
  g = gpu::WarpSumXor(g);
  u = gpu::WarpSumXor(u);
  if (lane == 0 && j < a.inter) a.hidden[i * rows + j] = active ? Activate(g, 2) * u : 0.f;
}

// out[t, r] = weight[t] * down[e_t][r] . hidden[t, :I]  (one warp per row r).
__global__ void __launch_bounds__(kThreads) MoeDownKernel(MoeArgs a) {
  const int64_t i = blockIdx.x;
  const int lane = static_cast<int>(threadIdx.x) % gpu::kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / gpu::kWarp;
  const int64_t e = a.expert[i];
  const bool active = e >= 0 && e < a.e && row < a.h;
  const float* hid = a.hidden + i * 2 * a.inter;
  float acc = 0.f;
  if (active) acc = LaneRowDot(a.down, e * a.h + row, hid, a.inter, lane);
  acc = gpu::WarpSumXor(acc);
  if (lane == 0 && row < a.h) a.out[i * a.h + row] = active ? a.weight[i] * acc : 0.f;
}

__global__ void __launch_bounds__(kThreads)
    GatherRowsKernel(const float* src, const int32_t* idx, int64_t n, float* dst) {
  const int64_t r = blockIdx.x;
  const int64_t from = idx[r];
  for (int64_t j = threadIdx.x; j < n; j += kThreads) dst[r * n + j] = src[from * n + j];
}

}  // namespace

void LaunchEmbed(hipStream_t stream, const int32_t* ids, int64_t t, DevWeights table, int64_t h,
                 DevVec bias, DevVec scale, float* out) {
  ZAYA_LAUNCH(EmbedKernel, dim3(static_cast<unsigned>(t)), dim3(kThreads), stream, ids, table, h,
              bias, scale, out);
}

void LaunchRmsNorm(hipStream_t stream, const float* x, DevVec w, int64_t t, int64_t n, float eps,
                   float* y) {
  ZAYA_LAUNCH(RmsNormKernel, dim3(static_cast<unsigned>(t)), dim3(kThreads), stream, x, w, n, eps,
              y);
}

void LaunchMatMuls(hipStream_t stream, const float* x, int64_t t, int64_t k, const MatVecJob* jobs,
                   int count) {
  if (t > kMatVecMaxTokens) {
    for (int j = 0; j < count; ++j) {
      const MatVecJob& m = jobs[j];
      const dim3 grid(static_cast<unsigned>(Blocks(m.n, kTile)),
                      static_cast<unsigned>(Blocks(t, kTile)));
      ZAYA_LAUNCH(GemmKernel, grid, dim3(kThreads), stream, x, t, k, m.w, m.n, m.bias,
                  static_cast<int>(m.act), m.y);
    }
    return;
  }
  MatVecJobs all{};
  all.count = count;
  for (int j = 0; j < count; ++j) {
    all.job[j] = jobs[j];
    all.first_block[j + 1] = all.first_block[j] + Blocks(jobs[j].n, kRowsPerBlock);
  }
  for (int j = count; j < kMaxMatVecJobs; ++j) all.first_block[j + 1] = all.first_block[j];
  const dim3 grid(static_cast<unsigned>(all.first_block[count]));
  for (int64_t t0 = 0; t0 < t; t0 += kMatVecChunk) {
    const int64_t nt = t - t0 < kMatVecChunk ? t - t0 : kMatVecChunk;
    // The smallest accumulator count that holds the pass: one token's kernel needs ~36
    // registers where sixteen tokens' needs ~150 (fewer resident warps, fewer loads in flight).
    if (nt == 1) {
      ZAYA_LAUNCH(MatVecKernel<1>, grid, dim3(kThreads), stream, x, t0, nt, k, all);
    } else if (nt <= 4) {
      ZAYA_LAUNCH(MatVecKernel<4>, grid, dim3(kThreads), stream, x, t0, nt, k, all);
    } else {
      ZAYA_LAUNCH(MatVecKernel<kMatVecChunk>, grid, dim3(kThreads), stream, x, t0, nt, k, all);
    }
  }
}

void LaunchMergeNorm(hipStream_t stream, const float* x, DevVec bh, DevVec sh, DevVec br, DevVec sr,
                     int64_t t, int64_t n, float* h, DevVec w, float eps, float* y) {
  ZAYA_LAUNCH(MergeNormKernel, dim3(static_cast<unsigned>(t)), dim3(kThreads), stream, x, bh, sh,
              br, sr, n, h, w, eps, y);
}

void LaunchMulAdd(hipStream_t stream, const float* a, const float* b, DevVec s, int64_t t,
                  int64_t n, float* out) {
  ZAYA_LAUNCH(MulAddKernel, dim3(GridStrideBlocks(t * n)), dim3(kThreads), stream, a, b, s, t * n,
              n, out);
}

void LaunchMerge(hipStream_t stream, const float* x, DevVec bh, DevVec sh, DevVec br, DevVec sr,
                 int64_t t, int64_t n, float* h) {
  ZAYA_LAUNCH(MergeKernel, dim3(GridStrideBlocks(t * n)), dim3(kThreads), stream, x, bh, sh, br, sr,
              t * n, n, h);
}

void LaunchCca(hipStream_t stream, const CcaArgs& a) {
  const int64_t tokens = a.tokens;
  const int64_t c = (a.nh + a.nkv) * a.hd;
  ZAYA_LAUNCH(CcaDepthwiseKernel, dim3(GridStrideBlocks(tokens * c)), dim3(kThreads), stream, a);
  ZAYA_LAUNCH(CcaGroupedKernel,
              dim3(static_cast<unsigned>(tokens), static_cast<unsigned>(Blocks(c, kWarps))),
              dim3(kThreads), stream, a);
  ZAYA_LAUNCH(CcaTokenKernel,
              dim3(static_cast<unsigned>(tokens), static_cast<unsigned>(a.nh + a.nkv)),
              dim3(kThreads), stream, a);
  ZAYA_LAUNCH(CcaStateKernel, dim3(static_cast<unsigned>(a.runs)), dim3(kThreads), stream, a);
}

void LaunchAttention(hipStream_t stream, const AttentionArgs& a) {
  ZAYA_LAUNCH(AppendKvKernel, dim3(static_cast<unsigned>(a.t)), dim3(kThreads), stream, a);
  const dim3 grid(static_cast<unsigned>(a.t * a.nh), static_cast<unsigned>(a.chunks));
  if (a.cache == kCacheBf16) {
    ZAYA_LAUNCH(AttendKernel<kCacheBf16>, grid, dim3(kThreads), stream, a);
  } else if (a.cache == kCacheI8) {
    ZAYA_LAUNCH(AttendKernel<kCacheI8>, grid, dim3(kThreads), stream, a);
  } else {
    ZAYA_LAUNCH(AttendKernel<kCacheF32>, grid, dim3(kThreads), stream, a);
  }
  if (a.chunks > 1) {
    ZAYA_LAUNCH(AttendCombineKernel, dim3(static_cast<unsigned>(a.t * a.nh)), dim3(kThreads),
                stream, a);
  }
}

void LaunchRouterSelect(hipStream_t stream, const float* logits, DevVec bias, int64_t t, int64_t e1,
                        int32_t* expert, float* weight) {
  ZAYA_LAUNCH(RouterSelectKernel, dim3(static_cast<unsigned>(Blocks(t, kThreads))), dim3(kThreads),
              stream, logits, bias, t, e1, expert, weight);
}

void LaunchMoe(hipStream_t stream, const MoeArgs& a) {
  const unsigned tokens = static_cast<unsigned>(a.t);
  ZAYA_LAUNCH(MoeGateUpKernel, dim3(tokens, static_cast<unsigned>(Blocks(a.inter, kWarps))),
              dim3(kThreads), stream, a);
  ZAYA_LAUNCH(MoeDownKernel, dim3(tokens, static_cast<unsigned>(Blocks(a.h, kWarps))),
              dim3(kThreads), stream, a);
}

void LaunchGatherRows(hipStream_t stream, const float* src, const int32_t* idx, int64_t r,
                      int64_t n, float* dst) {
  ZAYA_LAUNCH(GatherRowsKernel, dim3(static_cast<unsigned>(r)), dim3(kThreads), stream, src, idx, n,
              dst);
}

}  // namespace zaya::hip
