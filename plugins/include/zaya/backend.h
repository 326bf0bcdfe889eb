/* zaya/backend.h: the C ABI between zayad (the host) and a compute backend plugin.
 *
 * A backend is a shared object that exports
 *     const zaya_backend_api* zaya_backend_entry_v1(void);
 * and optionally
 *     int zaya_backend_score(const char** reason);
 * The host dlopens it (RTLD_NOW | RTLD_LOCAL), calls zaya_backend_score when present (0 = unusable on
 * this host, *reason says why; higher = preferred), then the entry point, and checks abi_major and
 * struct_size before it calls anything else.
 *
 * Versioning: abi_major changes only when an existing member changes meaning; the host refuses a
 * different major. Members are only appended, each marked "since 1.N"; a host reads a member only when
 * struct_size covers it. Op types are only appended too; a backend answers an op type it does not know
 * with ZAYA_STATUS_UNSUPPORTED.
 *
 * Errors: every call returns a zaya_status; last_error() returns text for the last failure on that
 * backend instance (valid until the next call on it). No C++ exception and no abort crosses this
 * boundary.
 *
 * Threading: one backend instance is driven by one host thread at a time (the scheduler). A backend
 * may run its own worker threads; they are joined in destroy(). The host never dlcloses a plugin whose
 * instances are alive.
 *
 * Tensors are dense, row-major, described by zaya_tensor (buffer + byte offset + dtype + shape, the
 * last dimension contiguous). Shapes below use T = tokens in the step, H = hidden size, S = sequences
 * in the step. All activations are f32; weights are f32, bf16 or int8 (with per-block scales).
 */
#ifndef ZAYA_BACKEND_H_
#define ZAYA_BACKEND_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2.0: int8 weights carry one scale per 128 values of a row (ZAYA_I8_BLOCK), where 1.x had one per
 * 32; the members and op types are those of 1.2. */
#define ZAYA_BACKEND_ABI_MAJOR 2
#define ZAYA_BACKEND_ABI_MINOR 0

typedef enum zaya_status {
  ZAYA_STATUS_OK = 0,
  ZAYA_STATUS_INVALID_ARGUMENT = 1, /* a call's arguments are inconsistent (shapes, dtypes, null) */
  ZAYA_STATUS_OUT_OF_MEMORY = 2,    /* the device cannot hold the allocation */
  ZAYA_STATUS_UNSUPPORTED = 3,      /* op type, dtype or option this backend does not implement */
  ZAYA_STATUS_DEVICE_ERROR = 4,     /* the device or its runtime failed */
  ZAYA_STATUS_INTERNAL = 5          /* a bug in the backend */
} zaya_status;

typedef enum zaya_dtype {
  ZAYA_DTYPE_F32 = 0,
  ZAYA_DTYPE_BF16 = 1,
  ZAYA_DTYPE_F16 = 2,
  ZAYA_DTYPE_I8 = 3, /* symmetric int8 weights; scales in a separate f32 tensor (ZAYA_I8_BLOCK) */
  ZAYA_DTYPE_I32 = 4
} zaya_dtype;

/* int8 weights: one f32 scale per this many consecutive values of a row (the last block of a row
 * may be shorter), so an i8 matrix [N, K] has scales [N, ceil(K / ZAYA_I8_BLOCK)]. */
#define ZAYA_I8_BLOCK 128
/* Scales of an int8 row of `cols` values, ceil(cols / ZAYA_I8_BLOCK). */
static inline int64_t zaya_i8_scales(int64_t cols) {
  return (cols + ZAYA_I8_BLOCK - 1) / ZAYA_I8_BLOCK;
}

typedef enum zaya_buffer_kind {
  ZAYA_BUFFER_WEIGHTS = 0, /* written once at load, read by every step */
  ZAYA_BUFFER_STATE = 1,   /* KV blocks and per-sequence CCA state; lives across steps */
  ZAYA_BUFFER_SCRATCH = 2, /* activations of one step */
  ZAYA_BUFFER_HOST = 3     /* small host-visible tensors the host writes every step (ids, tables) */
} zaya_buffer_kind;

typedef enum zaya_device_kind {
  ZAYA_DEVICE_CPU = 0,
  ZAYA_DEVICE_GPU = 1
} zaya_device_kind;

typedef struct zaya_backend zaya_backend; /* opaque, owned by the plugin */
typedef struct zaya_buffer zaya_buffer;   /* opaque, owned by the plugin */

typedef void (*zaya_log_fn)(void* user, int priority /* syslog 3..7 */, const char* message);

typedef struct zaya_backend_options {
  uint32_t struct_size; /* sizeof(zaya_backend_options) as the host compiled it */
  int32_t device_index; /* which device of this backend to use */
  int32_t threads;      /* worker threads for CPU work; 0 = all online cores */
  zaya_log_fn log;      /* may be NULL */
  void* log_user;
} zaya_backend_options;

typedef struct zaya_device_info {
  uint32_t struct_size;
  zaya_device_kind kind;
  char name[128];
  uint64_t total_memory; /* bytes */
  uint64_t free_memory;  /* bytes, at the time of the call */
  uint32_t caps;         /* ZAYA_CAP_* bits */
} zaya_device_info;

#define ZAYA_CAP_BF16_WEIGHTS (1u << 0)
#define ZAYA_CAP_I8_WEIGHTS (1u << 1)
#define ZAYA_CAP_GRAPH_CAPTURE (1u << 2)
#define ZAYA_CAP_I8_KV (1u << 3) /* since 1.2: ZAYA_OP_ATTENTION takes i8 caches (see there) */

typedef struct zaya_tensor {
  zaya_buffer* buffer; /* NULL marks an absent optional operand */
  uint64_t offset;     /* bytes from the start of the buffer */
  int32_t dtype;       /* zaya_dtype */
  int32_t ndim;        /* 1..4 */
  int64_t shape[4];
} zaya_tensor;

/* Op types. Operands are src[i] / dst[i]; f[] and i[] carry scalar parameters. Every op reads its
 * sources and writes its destinations; a destination may alias a source only where noted. */
typedef enum zaya_op_type {
  /* dst0[T,H] f32 = (table[ids[t]] + src2) * src3.  src0 ids [T] i32, src1 table [V,H],
   * src2 bias [H], src3 scale [H] (both optional: absent = 0 / 1), src4 i8 scales of the table. */
  ZAYA_OP_EMBED = 1,
  /* dst0[T,N] = x[T,N] / rms(x) * w.  src0 x f32, src1 w [N]; f0 = eps. dst0 may alias src0. */
  ZAYA_OP_RMSNORM = 2,
  /* dst0[T,N] f32 = act(src0[T,K] @ src1[N,K]^T + src2[N]).  src1 f32/bf16/i8 (i8: src3 = scales
   * [N, ceil(K/ZAYA_I8_BLOCK)] f32), src2 bias optional. i0 = activation (ZAYA_ACT_*). With i8
   * weights a backend may round x to 16-bit integers per token first (each value off by at most
   * 2^-16 of the largest |x| of its token) or to 8-bit integers per block of 32 columns or of
   * ZAYA_I8_BLOCK columns (at most 2^-7 of the largest |x| of its block), so that the products run
   * in integer SIMD; with bf16 weights it may round x to bf16 (nearest even to 8 significant bits:
   * each value off by at most 2^-8 of itself), so that they run in bf16 dot-product instructions.
   * Either way a row's result must not depend on T. */
  ZAYA_OP_MATMUL = 3,
  /* dst0[T,N] = src0[T,N] + src1[T,N] * src2[N] (per-channel scale). dst0 may alias src0. */
  ZAYA_OP_MUL_ADD = 4,
  /* Residual merge: dst0[T,H] = (src0 + src1b) * src1s + (dst0 + src2b) * src2s, where dst0 is the
   * residual stream (read and written), src0 the branch output, src1 = branch bias, src2 = branch
   * scale, src3 = residual bias, src4 = residual scale (all [H]). */
  ZAYA_OP_MERGE = 5,
  /* Compressed convolutional attention, q/k/v preparation for one layer (ZAYA1.md "CCA").
   * src0 q0 [T, nh*hd] f32, src1 k0 [T, nkv*hd] f32 (the q/k projections; s_t = [q0 | k0] has
   * C = (nh+nkv)*hd channels), src2 vcur [T, nkv*hd/2], src3 vdel [T, nkv*hd/2],
   * src4 depthwise weight [C,1,2], src5 depthwise bias [C], src6 grouped weight [C,hd,2],
   * src7 grouped bias [C], src8 temp [nkv].
   * dst0 q [T, nh*hd], dst1 k [T, nkv*hd], dst2 v [T, nkv*hd] = [vcur_t | vdel_{t-1}].
   * State, read and updated in place: dst3 conv state [slots, 2, C] f32 (the two previous s rows,
   * older first; zeros for a new sequence), dst4 value state [slots, nkv*hd/2] f32 (vdel of the
   * previous token). Batch layout: aux0 seq_of_token [T] i32 (index into aux1), aux1 slot_of_seq
   * [S] i32, aux2 position [T] i32. Tokens of one sequence are contiguous and in order, and no
   * two runs of tokens share a slot (backends refuse that op: each run reads its slot's state as
   * it was before the op).
   * i0 = nh, i1 = nkv, i2 = hd, i3 = rope_dims; f0 = rope theta, f1 = L2-norm epsilon. */
  ZAYA_OP_CCA = 6,
  /* Paged causal GQA attention for one layer, after appending this step's k/v to the cache.
   * src0 q [T, nh*hd], src1 k [T, nkv*hd], src2 v [T, nkv*hd] f32.
   * dst1 K cache, dst2 V cache [blocks, block_tokens, nkv, hd] (f32 or bf16): rows written here.
   * Since 1.2, where the backend reports ZAYA_CAP_I8_KV, they may be i8 with each (position, KV
   * head) row's scale in dst3 (K) and dst4 (V), [blocks, block_tokens, nkv] f32: a row is stored
   * as scale = max |x| / 127 and round(x / scale), and read as scale times its bytes. A backend
   * without the cap answers i8 caches with ZAYA_STATUS_UNSUPPORTED.
   * aux0 seq_of_token [T] i32, aux1 block_table [S, max_blocks] i32, aux2 position [T] i32.
   * dst0 out [T, nh*hd] f32. Token t attends to positions 0..position[t] of its sequence.
   * i0 = nh, i1 = nkv, i2 = hd, i3 = block_tokens; f0 = softmax scale. */
  ZAYA_OP_ATTENTION = 7,
  /* Router head: src0 logits [T, E+1] f32 -> p = softmax(logits); e = argmax(p + src1 bias [E+1]);
   * dst0 expert [T] i32 = e, dst1 weight [T] f32 = p[e]. */
  ZAYA_OP_ROUTER_SELECT = 8,
  /* Top-1 MoE with SwiGLU experts: dst0[T,H] = weight[t] * down[e] (silu(G) * U), [G;U] =
   * gate_up[e] x[t]; expert index E (the skip expert) gives 0. src0 x [T,H] f32, src1 gate_up [E,
   * 2I, H], src2 down [E, H, I], src3 expert [T] i32, src4 weight [T] f32; i8 weights: src5 gate_up
   * scales [E, 2I, ceil(H/ZAYA_I8_BLOCK)], src6 down scales [E, H, ceil(I/ZAYA_I8_BLOCK)].
   * i0 = E. */
  ZAYA_OP_MOE = 9,
  /* dst0[R, N] = src0[idx[r], :] for aux0 idx [R] i32. */
  ZAYA_OP_GATHER_ROWS = 10,
  /* Byte copy between buffers: dst0 <- src0, nbytes = i0 (the tensors' shapes are ignored). Used to
   * fork per-sequence state and to copy-on-write KV blocks. */
  ZAYA_OP_COPY = 11
} zaya_op_type;

typedef enum zaya_activation {
  ZAYA_ACT_NONE = 0,
  ZAYA_ACT_GELU = 1, /* exact erf form */
  ZAYA_ACT_SILU = 2
} zaya_activation;

#define ZAYA_OP_MAX_SRC 10
#define ZAYA_OP_MAX_DST 5
#define ZAYA_OP_MAX_AUX 3

typedef struct zaya_op {
  int32_t type; /* zaya_op_type */
  int32_t flags;
  zaya_tensor src[ZAYA_OP_MAX_SRC];
  zaya_tensor dst[ZAYA_OP_MAX_DST];
  zaya_tensor aux[ZAYA_OP_MAX_AUX]; /* index tensors (i32) describing the batch */
  float f[4];
  int64_t i[4];
} zaya_op;

typedef struct zaya_backend_api {
  /* since 1.0 */
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t struct_size; /* sizeof(zaya_backend_api) as the plugin compiled it */
  const char* name;     /* "cpu", "hip", ... */
  const char* version;  /* the plugin's own version string */

  zaya_status (*create)(const zaya_backend_options* options, zaya_backend** out);
  /* Joins the backend's threads and frees everything, buffers included. Accepts NULL. */
  void (*destroy)(zaya_backend* backend);
  const char* (*last_error)(zaya_backend* backend);

  zaya_status (*device_info)(zaya_backend* backend, zaya_device_info* out);

  /* Buffers: device memory of `bytes` bytes, zero-filled. */
  zaya_status (*buffer_alloc)(zaya_backend* backend, zaya_buffer_kind kind, uint64_t bytes,
                              zaya_buffer** out);
  void (*buffer_free)(zaya_backend* backend, zaya_buffer* buffer); /* accepts NULL */
  zaya_status (*buffer_write)(zaya_backend* backend, zaya_buffer* buffer, uint64_t offset,
                              const void* src, uint64_t bytes);
  zaya_status (*buffer_read)(zaya_backend* backend, zaya_buffer* buffer, uint64_t offset,
                             void* dst, uint64_t bytes);

  /* Executes a forward step's ops in order; results are visible to buffer_read when it returns
   * ZAYA_STATUS_OK. On failure nothing after the failing op ran; last_error names the op index. */
  zaya_status (*execute)(zaya_backend* backend, const zaya_op* ops, uint64_t n_ops);

  /* since 1.1; may be NULL (the backend reads every weight as written).
   * Tells the backend that the matrix `weight` ([rows, K] or [E, rows, K] in a ZAYA_BUFFER_WEIGHTS
   * buffer; f32, bf16 or i8 with its `scales`, else scales may be NULL or absent) is written in
   * full and will only be read by ops from now on, so that the backend may rearrange its bytes
   * in place into a layout of its own that its ops read faster (the role of ggml's repacking
   * buffer types: buffer_write knows no shapes); for i8, if `scales` is in a
   * ZAYA_BUFFER_WEIGHTS buffer too, the scales' bytes with them (a layout may interleave the two
   * where the scales start right where the weight ends, in the same buffer: the CPU backend's
   * int8 block layout; hosts should place them so). The layout never needs more bytes.
   * After the call: buffer_read of those bytes returns the backend's layout; buffer_write into
   * them fails with ZAYA_STATUS_INVALID_ARGUMENT; ops must name the weight (as a matmul's, MoE's
   * or embedding's weights) with its K and from a row boundary inside it (a layout may group
   * rows: the CPU backend's bf16 and int8 ones take blocks of 16, and a view must then be whole
   * blocks), and, where the scales were rearranged, with the same rows of those scales, else
   * they fail with INVALID_ARGUMENT. A layout may change the order of a matmul's sums
   * (within the rounding the op allows), never a row's independence of T. Preparing the same tensor
   * again is a no-op; a tensor that overlaps another prepared one differently is INVALID_ARGUMENT.
   * The host calls it during loading, on the scheduler's thread, like every other call. */
  zaya_status (*weight_prepare)(zaya_backend* backend, const zaya_tensor* weight,
                                const zaya_tensor* scales);
} zaya_backend_api;

typedef const zaya_backend_api* (*zaya_backend_entry_v1_fn)(void);
typedef int (*zaya_backend_score_fn)(const char** reason);

#define ZAYA_BACKEND_ENTRY_SYMBOL "zaya_backend_entry_v1"
#define ZAYA_BACKEND_SCORE_SYMBOL "zaya_backend_score"

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ZAYA_BACKEND_H_ */
