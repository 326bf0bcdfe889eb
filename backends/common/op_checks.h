// Validation helpers every backend plugin applies to the ops it is given (the ABI's tensors come
// from another library, so each plugin checks them before touching memory). Header-only and free
// of dependencies beyond the ABI header: plugins link nothing of the engine.
//
// Contract: the plugin defines `struct zaya_buffer` with a `uint64_t bytes` member and
// `struct zaya_backend` with a `std::string last_error` member before instantiating the templates
// below. Errors are thrown as OpError inside a plugin and turned into a status by Guard() at the
// ABI boundary, so no exception crosses it. Everything here is stateless and thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "zaya/backend.h"

namespace zaya::backend_common {

class OpError : public std::runtime_error {
 public:
  OpError(zaya_status s, const std::string& m) : std::runtime_error(m), status(s) {}
  zaya_status status;
};

[[noreturn]] inline void Fail(const std::string& m) {
  throw OpError(ZAYA_STATUS_INVALID_ARGUMENT, m);
}

inline size_t DTypeSize(int32_t dtype) {
  switch (dtype) {
    case ZAYA_DTYPE_F32:
      return 4;
    case ZAYA_DTYPE_BF16:
      return 2;
    case ZAYA_DTYPE_F16:
      return 2;
    case ZAYA_DTYPE_I8:
      return 1;
    case ZAYA_DTYPE_I32:
      return 4;
    default:
      Fail("unknown dtype " + std::to_string(dtype));
  }
}

// "f32", ..., for messages; the number for a dtype the ABI does not define.
inline std::string DTypeName(int32_t dtype) {
  switch (dtype) {
    case ZAYA_DTYPE_F32:
      return "f32";
    case ZAYA_DTYPE_BF16:
      return "bf16";
    case ZAYA_DTYPE_F16:
      return "f16";
    case ZAYA_DTYPE_I8:
      return "i8";
    case ZAYA_DTYPE_I32:
      return "i32";
    default:
      return "dtype " + std::to_string(dtype);
  }
}

inline bool Present(const zaya_tensor& t) { return t.buffer != nullptr; }

// "[2, 3]", for messages.
inline std::string ShapeText(const zaya_tensor& t) {
  std::string s = "[";
  for (int i = 0; i < t.ndim && i < 4; ++i) s += (i > 0 ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

// Element count; fails on a rank outside 1..4, a negative dimension, or a count past int64 (the
// shape comes from another library: a wrapped count would pass every bounds check).
inline int64_t Elements(const zaya_tensor& t) {
  if (t.ndim < 1 || t.ndim > 4) Fail("tensor ndim " + std::to_string(t.ndim) + " not in 1..4");
  int64_t n = 1;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0) Fail("negative tensor dimension");
    if (__builtin_mul_overflow(n, t.shape[i], &n)) {
      Fail("a tensor of shape " + ShapeText(t) +
           " has more elements than an int64 counts; check the op's shapes");
    }
  }
  return n;
}

// True when t has exactly as many elements as the product of dims, which may be op parameters
// (op.i) and so anything: a product past int64 is no match, never a wrapped one.
inline bool ElementsAre(const zaya_tensor& t, std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  return Elements(t) == n;
}

// ATTENTION's and CCA's head counts, head_dim and block_tokens (op.i) are at most this, so that
// the sizes built from them (nh * hd, C * hd * 2, ...) fit an int64 (ZAYA1's are 8-32 and 128).
inline constexpr int64_t kMaxHeadParam = int64_t{1} << 20;

inline int64_t Dim(const zaya_tensor& t, int i) { return i < t.ndim ? t.shape[i] : 1; }
// The last dimension, and the product of the others.
inline int64_t Cols(const zaya_tensor& t) {
  Elements(t);
  return t.shape[t.ndim - 1];
}
inline int64_t Rows(const zaya_tensor& t) {
  const int64_t c = Cols(t);
  return Elements(t) / (c > 0 ? c : 1);
}

// A MATMUL's sizes (ZAYA_OP_MATMUL in backend.h): x [T, K] against W [N, K] into y [T, N]. Throws,
// with the same message in every backend, when K or y's size disagree.
struct MatMulSizes {
  int64_t t, k, n;
};
inline MatMulSizes CheckMatMulSizes(const zaya_op& op) {
  const int64_t k = Cols(op.src[0]), t = Rows(op.src[0]);
  if (Cols(op.src[1]) != k) {
    Fail("matmul: x has K=" + std::to_string(k) + " but W has " + std::to_string(Cols(op.src[1])));
  }
  const int64_t n = Rows(op.src[1]);
  if (Elements(op.dst[0]) != t * n) Fail("matmul output must be [T,N]");
  return {t, k, n};
}

// CCA's token runs (ZAYA_OP_CCA in backend.h): each sequence's tokens are one contiguous run in a
// state slot of its own. `begin` holds each run's first token and then T (int32, as the HIP
// backend hands it to its kernels), `slot` each run's slot. Throws on a seq_of_token or slot out
// of range and on two runs in one slot (each run reads its slot's state as it was before the op).
struct CcaRuns {
  std::vector<int32_t> begin, slot;
};
inline CcaRuns CcaTokenRuns(const int32_t* seq_of_token, int64_t t, const int32_t* slot_of_seq,
                            int64_t n_seq, int64_t slots) {
  CcaRuns r;
  std::vector<char> taken(static_cast<size_t>(slots), 0);
  for (int64_t i = 0; i < t; ++i) {
    const int32_t s = seq_of_token[i];
    if (s < 0 || s >= n_seq) Fail("cca: seq_of_token out of range");
    const int32_t slot = slot_of_seq[s];
    if (slot < 0 || slot >= slots) Fail("cca: state slot out of range");
    if (i == 0 || seq_of_token[i - 1] != s) {
      if (taken[static_cast<size_t>(slot)] != 0) {
        Fail("cca: two token runs share state slot " + std::to_string(slot) +
             " (a sequence's tokens must be contiguous, one sequence per slot)");
      }
      taken[static_cast<size_t>(slot)] = 1;
      r.begin.push_back(static_cast<int32_t>(i));
      r.slot.push_back(slot);
    }
  }
  r.begin.push_back(static_cast<int32_t>(t));
  return r;
}

// The attention op's indices: every token's sequence is a row of the block table, its position
// fits the table, and every block it reads (positions 0 .. position[i], i.e. table entries 0 ..
// position[i] / block_tokens of its row) is one of the cache's `blocks`; entries past those are
// not looked at (the engine leaves them -1). Checked once per sequence, up to its last token's
// block, before a backend writes or reads anything. Throws on the first problem.
inline void CheckAttentionBlocks(const int32_t* seq_of_token, const int32_t* position, int64_t t,
                                 const int32_t* table, int64_t n_seq, int64_t max_blocks,
                                 int64_t block_tokens, int64_t blocks) {
  std::vector<int32_t> last(static_cast<size_t>(n_seq), -1);
  for (int64_t i = 0; i < t; ++i) {
    const int32_t s = seq_of_token[i];
    if (s < 0 || s >= n_seq) Fail("attention: seq_of_token out of range");
    if (position[i] < 0 || position[i] / block_tokens >= max_blocks) {
      Fail("attention: position beyond the block table");
    }
    last[static_cast<size_t>(s)] = std::max(last[static_cast<size_t>(s)], position[i]);
  }
  for (int64_t s = 0; s < n_seq; ++s) {
    for (int64_t blk = 0;
         last[static_cast<size_t>(s)] >= 0 && blk <= last[static_cast<size_t>(s)] / block_tokens;
         ++blk) {
      const int32_t id = table[s * max_blocks + blk];
      if (id < 0 || id >= blocks) Fail("attention: block id out of range");
    }
  }
}

// An int8 KV cache's row scales (backend.h, ZAYA_OP_ATTENTION since 1.2): dst3 and dst4 present,
// [blocks, block_tokens, nkv] each.
inline void CheckKvScales(const zaya_op& op, int64_t blocks, int64_t block_tokens, int64_t nkv) {
  if (op.dst[3].buffer == nullptr || op.dst[4].buffer == nullptr ||
      !ElementsAre(op.dst[3], {blocks, block_tokens, nkv}) ||
      !ElementsAre(op.dst[4], {blocks, block_tokens, nkv})) {
    Fail(
        "attention: an i8 cache needs its row scales as dst3 and dst4, [blocks, block_tokens, "
        "nkv] f32 each ([" +
        std::to_string(blocks) + ", " + std::to_string(block_tokens) + ", " + std::to_string(nkv) +
        "])");
  }
}

inline void ExpectDType(const zaya_tensor& t, int32_t dtype, const char* what) {
  if (t.dtype != dtype) {
    Fail(std::string(what) + " has dtype " + DTypeName(t.dtype) + ", expected " + DTypeName(dtype));
  }
}

// The dtype a kernel means when it reads a tensor's elements as T.
template <typename T>
constexpr int32_t DTypeOf() {
  using U = std::remove_cv_t<T>;
  static_assert(std::is_same_v<U, float> || std::is_same_v<U, int32_t> ||
                    std::is_same_v<U, uint16_t> || std::is_same_v<U, int8_t>,
                "no zaya_dtype is read as this type");
  if constexpr (std::is_same_v<U, float>) return ZAYA_DTYPE_F32;
  if constexpr (std::is_same_v<U, int32_t>) return ZAYA_DTYPE_I32;
  if constexpr (std::is_same_v<U, uint16_t>) return ZAYA_DTYPE_BF16;
  return ZAYA_DTYPE_I8;
}

// For a typed pointer to t's data: CheckBounds sizes t with its own dtype, so elements read as a
// wider type would run past the checked bytes.
template <typename T>
void ExpectElementsOf(const zaya_tensor& t, const char* what) {
  ExpectDType(t, DTypeOf<T>(), what);
}

// The tensor is present and its bytes lie inside its buffer. `Buffer` defers the member access to
// the plugin's definition of zaya_buffer.
template <typename Buffer = zaya_buffer>
void CheckBounds(const zaya_tensor& t, const char* what) {
  if (t.buffer == nullptr) Fail(std::string(what) + " is missing");
  const uint64_t bytes = static_cast<const Buffer*>(t.buffer)->bytes;
  uint64_t need = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(Elements(t)), DTypeSize(t.dtype), &need)) {
    Fail(std::string(what) + " of shape " + ShapeText(t) + " " + DTypeName(t.dtype) +
         " is more bytes than a uint64 counts; check its shape");
  }
  if (t.offset > bytes || need > bytes - t.offset) {
    Fail(std::string(what) + " (" + std::to_string(need) + " bytes at offset " +
         std::to_string(t.offset) + ") lies outside its buffer of " + std::to_string(bytes) +
         " bytes");
  }
}

// Runs fn() and turns whatever it throws into a status, with the message in b->last_error.
template <typename Backend, typename Fn>
zaya_status Guard(Backend* b, Fn&& fn) {
  try {
    return fn();
  } catch (const OpError& e) {
    if (b != nullptr) b->last_error = e.what();
    return e.status;
  } catch (const std::bad_alloc&) {
    if (b != nullptr) b->last_error = "host out of memory";
    return ZAYA_STATUS_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    if (b != nullptr) b->last_error = e.what();
    return ZAYA_STATUS_INTERNAL;
  } catch (...) {
    if (b != nullptr) b->last_error = "unknown exception";
    return ZAYA_STATUS_INTERNAL;
  }
}

}  // namespace zaya::backend_common
