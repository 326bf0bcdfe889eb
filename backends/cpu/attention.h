// Attention over the paged KV cache (ZAYA_OP_ATTENTION after its rows are stored), split the way
// flash-decoding splits it: each query token's positions go in chunks of kAttendChunkPositions,
// each chunk's softmax is computed on its own (its max m, sum l and weighted values acc per
// head), and the chunks are merged in order. At decode a token attends over its whole context,
// and Markovian RSA's candidates decode at thousands of positions: one work unit per token and
// KV head (until session 16) left batch 1 with one unit per KV head and read each position's K
// and V rows in halves, one per KV head; chunks give every thread work at any batch, and a chunk
// reads its K and V rows of all KV heads at once.
//
// Determinism: the chunks depend only on a token's position and the cache's block size, and the
// merge folds them in order, so a token's output is bitwise the same whatever else shares the step
// and however the chunks are spread over threads (seeded decoding is reproducible at any batch).
//
// Thread safety: Attend runs on the pool it is given; callers serialize calls (the scratch is the
// caller's).
#pragma once

#include <cstdint>
#include <vector>

#include "thread_pool.h"

namespace zaya::cpu {

// Positions per chunk (rounded to whole cache blocks): 256 keep a chunk's scores (8 heads x 256
// floats) and its converted rows in L1/L2, and give batch 1 at 2,048 positions 8 chunks.
constexpr int64_t kAttendChunkPositions = 256;

enum class KvType { kF32, kBf16, kI8 };

// The paged KV cache: [blocks, block_tokens, nkv, hd] at f32, bf16 (uint16 storage) or int8. An
// int8 cache has a scale per (position, KV head) row, k_scale and v_scale [blocks, block_tokens,
// nkv] f32: the row's values are its scale times its bytes.
struct KvCacheView {
  const void* k = nullptr;
  const void* v = nullptr;
  KvType type = KvType::kF32;
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
  int64_t blocks = 0, block_tokens = 0, nkv = 0, hd = 0;
};

// Partial results of the chunks of one wave of tokens; owned by the caller, reused across calls.
struct AttendScratch {
  std::vector<float> partial;  // per chunk: m[nh], l[nh], acc[nh][hd]
  std::vector<int64_t> chunk_token, chunk_begin, first_chunk;
  std::vector<int64_t> order;       // the chunks in the order they run
  std::vector<int64_t> part_begin;  // where each thread's run of `order` begins
};

// out[t][nh][hd] = softmax(scale q K^T) V for every token i of the step: q [t][nh][hd]; token i
// attends to positions 0 .. position[i] of sequence seq_of_token[i], whose cache blocks are
// table[seq * max_blocks + position / block_tokens]. Query head h reads KV head h / (nh / nkv).
// The caller has checked that every block those positions need is in the table and in range.
void Attend(ThreadPool& pool, const float* q, int64_t t, int64_t nh, const KvCacheView& kv,
            const int32_t* table, int64_t max_blocks, const int32_t* seq_of_token,
            const int32_t* position, float scale, float* out, AttendScratch* scratch);

namespace avx512 {
// Whether the AVX-512 block kernels below take this head_dim (a multiple of 16 up to 128: the
// head's query values and 16 rows' sums stay in registers).
bool AttendFits(int64_t hd);
// Rows [0, n) of one KV head, n <= 16, `stride` elements apart (row p at rows + p stride, hd
// values, f32 or bf16), against g query heads q [g][hd]: out[h * out_stride + p] = q_h . row_p,
// each sum 16 lanes over hd in order, then a fixed tree across lanes.
void KvScores(const float* q, int64_t g, int64_t hd, const float* rows, int64_t stride, int64_t n,
              float* out, int64_t out_stride);
void KvScores(const float* q, int64_t g, int64_t hd, const uint16_t* rows, int64_t stride,
              int64_t n, float* out, int64_t out_stride);
// acc[h][hd] += sum over p < n of w[h * w_stride + p] row_p for the g heads, p in order.
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const float* rows,
                  int64_t stride, int64_t n, float* acc);
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const uint16_t* rows,
                  int64_t stride, int64_t n, float* acc);
// int8 rows: the products before the rows' scales, which the caller applies.
void KvScores(const float* q, int64_t g, int64_t hd, const int8_t* rows, int64_t stride, int64_t n,
              float* out, int64_t out_stride);
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const int8_t* rows,
                  int64_t stride, int64_t n, float* acc);
}  // namespace avx512

// The same kernels in AVX2+FMA (8 lanes: 4 query heads x 2 rows a register block), for a CPU
// without the AVX-512 tiles; head sizes that are a multiple of 8 up to 128.
namespace avx2 {
bool AttendFits(int64_t hd);
void KvScores(const float* q, int64_t g, int64_t hd, const float* rows, int64_t stride, int64_t n,
              float* out, int64_t out_stride);
void KvScores(const float* q, int64_t g, int64_t hd, const uint16_t* rows, int64_t stride,
              int64_t n, float* out, int64_t out_stride);
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const float* rows,
                  int64_t stride, int64_t n, float* acc);
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const uint16_t* rows,
                  int64_t stride, int64_t n, float* acc);
// int8 rows: the products before the rows' scales, which the caller applies.
void KvScores(const float* q, int64_t g, int64_t hd, const int8_t* rows, int64_t stride, int64_t n,
              float* out, int64_t out_stride);
void KvAccumulate(const float* w, int64_t w_stride, int64_t g, int64_t hd, const int8_t* rows,
                  int64_t stride, int64_t n, float* acc);
}  // namespace avx2

}  // namespace zaya::cpu
