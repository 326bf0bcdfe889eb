// Kernel launchers of the HIP backend (kernels.hip). Every function enqueues its kernel(s) on
// `stream` and returns at once; none validates anything: hip_backend.cc checks shapes, dtypes and
// every index against its operands before it calls them, so a launcher only sees consistent
// arguments. Pointers are device pointers (pinned, mapped host memory for ZAYA_BUFFER_HOST).
// Launch errors surface through hipGetLastError(), which the caller checks after each op.
//
// Numerics follow backends/cpu (the reference): f32 activations, f32 accumulation, bf16 and int8
// weights widened on load. Summation orders differ from the CPU's, so results agree within a
// tolerance, not bit for bit.
#pragma once

#include <cstdint>

#include "gpu_port.h"
#include "launch_record.h"
#include "zaya/backend.h"  // ZAYA_I8_BLOCK

namespace zaya::hip {

// Weight dtype codes (the ABI's zaya_dtype values, repeated so kernels.hip needs no ABI header).
inline constexpr int kF32 = 0;
inline constexpr int kBF16 = 1;
inline constexpr int kI8 = 3;

// A weight matrix [rows, k]: f32, bf16 (uint16 bits) or int8 with one f32 scale per ZAYA_I8_BLOCK
// (128) values of a row (scales [rows, ceil(k/128)]).
struct DevWeights {
  const void* data = nullptr;
  int dtype = kF32;
  int32_t unused = 0;  // explicit padding (launch_record.h: parameters are compared as bytes)
  const float* scales = nullptr;
};

// A per-channel vector (bias, scale, norm weight) of f32 or bf16; data == nullptr means "absent",
// read as `absent` by the kernels.
struct DevVec {
  const void* data = nullptr;
  int dtype = kF32;
  int32_t unused = 0;  // explicit padding, as in DevWeights
};

// Largest head_dim the attention and CCA kernels accept (one thread per channel of a head).
inline constexpr int64_t kMaxHeadDim = 256;
// Tokens up to which MatMul uses the weight-streaming matvec kernel (each weight row is read once
// per 8 tokens); above it, the shared-memory tiled kernel.
inline constexpr int64_t kMatVecMaxTokens = 16;

// out[t, :] = (table[ids[t], :] + bias) * scale.  ids [T] (validated), out [T, h].
void LaunchEmbed(hipStream_t stream, const int32_t* ids, int64_t t, DevWeights table, int64_t h,
                 DevVec bias, DevVec scale, float* out);

// y[t, :] = x[t, :] / rms(x[t, :]) * w; y may alias x.
void LaunchRmsNorm(hipStream_t stream, const float* x, DevVec w, int64_t t, int64_t n, float eps,
                   float* y);

// One matrix of a matmul launch: y[T, n] = act(x[T, K] W[n, K]^T + bias); act: 0 none, 1 gelu
// (erf), 2 silu.
struct MatVecJob {
  DevWeights w;
  DevVec bias;
  float* y = nullptr;
  int64_t n = 0;
  int32_t act = 0;
  int32_t unused = 0;  // explicit padding, as in DevWeights
};
inline constexpr int kMaxMatVecJobs = 4;

// The jobs (1..kMaxMatVecJobs) all read the same x [T, K]. Up to kMatVecMaxTokens tokens they run
// as one launch (a layer's q, k and value projections: one kernel where there were four), more
// as one tiled GEMM each. No job's y may overlap x (the caller checks).
void LaunchMatMuls(hipStream_t stream, const float* x, int64_t t, int64_t k, const MatVecJob* jobs,
                   int count);

// h = (x + bh) * sh + (h + br) * sr, then y = h / rms(h) * w, per row of n; one launch where
// MERGE and RMSNORM took two. y may equal h but must not otherwise overlap x or h.
void LaunchMergeNorm(hipStream_t stream, const float* x, DevVec bh, DevVec sh, DevVec br, DevVec sr,
                     int64_t t, int64_t n, float* h, DevVec w, float eps, float* y);

// out[i] = a[i] + b[i] * s[i % n] over t*n elements; out may alias a.
void LaunchMulAdd(hipStream_t stream, const float* a, const float* b, DevVec s, int64_t t,
                  int64_t n, float* out);

// h = (x + bh) * sh + (h + br) * sr, per channel vectors of length n.
void LaunchMerge(hipStream_t stream, const float* x, DevVec bh, DevVec sh, DevVec br, DevVec sr,
                 int64_t t, int64_t n, float* h);

struct CcaArgs {
  const float* q0;              // [T, nh*hd]
  const float* k0;              // [T, nkv*hd]
  const float* vcur;            // [T, nkv*hd/2]
  const float* vdel;            // [T, nkv*hd/2]
  DevVec dw, db, gw, gb, temp;  // [C,1,2], [C], [C,hd,2], [C], [nkv]
  float* q;                     // [T, nh*hd]
  float* k;                     // [T, nkv*hd]
  float* v;                     // [T, nkv*hd]
  float* conv_state;            // [slots, 2, C]
  float* v_state;               // [slots, nkv*hd/2]
  const int32_t* position;      // [T]
  const int32_t* run_begin;     // [runs + 1] token index where each sequence's run starts
  const int32_t* run_slot;      // [runs] the run's state slot
  float* work;                  // [3, T, C] scratch: depthwise outputs at t-1 and t, grouped conv
  int64_t tokens, runs, nh, nkv, hd, rope_dims;  // hd <= kMaxHeadDim
  float theta, eps;
};
// Four kernels on `stream`, each parallel over tokens: the depthwise conv (per channel), the
// grouped conv (a warp per output row), norm + RoPE + values (per head), then each run's state.
void LaunchCca(hipStream_t stream, const CcaArgs& a);

struct AttentionArgs {
  const float* q;  // [T, nh*hd]
  const float* k;  // [T, nkv*hd]
  const float* v;  // [T, nkv*hd]
  void* k_cache;   // [blocks, bt, nkv, hd] f32, bf16 or int8 (cache below)
  void* v_cache;
  int cache;       // kCacheF32, kCacheBf16 or kCacheI8
  int32_t unused = 0;  // explicit padding, as in DevWeights
  float* k_scale;  // int8: [blocks, bt, nkv], each row's scale (backend.h); else null
  float* v_scale;
  const int32_t* seq_of_token;  // [T]
  const int32_t* block_table;   // [S, max_blocks] (entries used are validated)
  const int32_t* position;      // [T]
  float* out;                   // [T, nh*hd]
  // chunks > 1: each (token, head) attends its positions in chunks of kAttnChunk, one block each,
  // which leave their partial softmax in partial [T * nh, chunks, hd + 2] for a combining pass.
  float* partial;
  int64_t chunks;
  int64_t t, nh, nkv, hd, bt, max_blocks;
  float scale;
  float unused_tail = 0.f;  // explicit padding, as in DevWeights
};
inline constexpr int kCacheF32 = 0, kCacheBf16 = 1, kCacheI8 = 2;
// Positions one attention block takes (AttentionArgs::chunks).
inline constexpr int64_t kAttnChunk = 256;
// Appends this step's k/v rows to the cache, then attends: one block per token, head and chunk of
// kAttnChunk positions, then (chunks > 1) one combining block per token and head.
void LaunchAttention(hipStream_t stream, const AttentionArgs& a);

// expert[t] = argmax(softmax(logits[t]) + bias), weight[t] = softmax(logits[t])[expert[t]].
void LaunchRouterSelect(hipStream_t stream, const float* logits, DevVec bias, int64_t t, int64_t e1,
                        int32_t* expert, float* weight);

struct MoeArgs {
  const float* x;         // [T, H]
  DevWeights gate_up;     // [E, 2I, H] (scales [E, 2I, H/128])
  DevWeights down;        // [E, H, I]
  const int32_t* expert;  // [T] device-resident (written by ROUTER_SELECT)
  const float* weight;    // [T]
  float* hidden;          // [T, 2I] workspace (the first I of a row: silu(G) * U)
  float* out;             // [T, H]
  int* error_flag;        // set to error_code when an expert index is outside 0..E
  int error_code;
  int32_t unused = 0;  // explicit padding, as in DevWeights
  int64_t t, h, inter, e;
};
// Per token: out = weight * down[e] (silu(G) * U), [G;U] = gate_up[e] x; expert E gives zeros.
void LaunchMoe(hipStream_t stream, const MoeArgs& a);

// dst[r, :] = src[idx[r], :] (indices validated).
void LaunchGatherRows(hipStream_t stream, const float* src, const int32_t* idx, int64_t r,
                      int64_t n, float* dst);

// Kernel parameter structs hold no implicit padding (launch_record.h compares them as bytes).
static_assert(sizeof(DevWeights) == 2 * sizeof(void*) + 2 * sizeof(int32_t));
static_assert(sizeof(DevVec) == sizeof(void*) + 2 * sizeof(int32_t));
static_assert(sizeof(MatVecJob) == sizeof(DevWeights) + sizeof(DevVec) + sizeof(void*) + 16);
static_assert(sizeof(CcaArgs) == 13 * sizeof(void*) + 5 * sizeof(DevVec) + 6 * 8 + 2 * 4);
static_assert(sizeof(AttentionArgs) == 12 * sizeof(void*) + 2 * 4 + 7 * 8 + 2 * 4);
static_assert(sizeof(MoeArgs) == 6 * sizeof(void*) + 2 * sizeof(DevWeights) + 2 * 4 + 4 * 8);

}  // namespace zaya::hip
