// libzaya-backend-cpu.so: the CPU implementation of the backend ABI (zaya/backend.h).
// Includes nothing of zayad but the ABI header. Every entry point catches everything: no exception
// crosses the boundary; failures become a status plus last_error text.
#include <cblas.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "../common/large_pages.h"
#include "../common/op_checks.h"
#include "../common/op_profile.h"
#include "attention.h"
#include "kernels.h"
#include "thread_pool.h"
#include "zaya/backend.h"

#ifndef ZAYA_VERSION
#define ZAYA_VERSION "0"
#endif

// A matrix the host handed to weight_prepare: rows of k values of `dtype` from its offset on.
// i8_tiles / bf16_tiles / i8_blocks: its bytes were rearranged into the int8 group layout
// (kernels.h PackI8Tiles), the bf16 one (PackBf16Tiles) or the int8 block one (PackI8Blocks),
// which takes in its scales, right after it in the same buffer (at scales_offset): the layout's
// blocks then fill the weight's bytes and the scales' from the weight's offset on, and the scales
// are an entry of their own (scales_of_weight, with k = K / kI8Group) so that nothing writes them.
struct PreparedWeight {
  uint64_t bytes = 0;
  int64_t k = 0;
  int32_t dtype = 0;
  bool i8_tiles = false;
  bool bf16_tiles = false;
  bool i8_blocks = false;
  uint64_t scales_offset = 0;
  bool scales_of_weight = false;
};

struct zaya_buffer {
  std::byte* data = nullptr;
  uint64_t bytes = 0;
  zaya_buffer_kind kind = ZAYA_BUFFER_SCRATCH;
  std::map<uint64_t, PreparedWeight> prepared;  // by offset; read-only bytes from then on
};

namespace {

// The prepared weight that overlaps [offset, offset + bytes) of buf, or null; *at = its offset.
const PreparedWeight* PreparedOverlap(const zaya_buffer* buf, uint64_t offset, uint64_t bytes,
                                      uint64_t* at) {
  if (buf->prepared.empty() || bytes == 0) return nullptr;
  auto it = buf->prepared.upper_bound(offset);  // the first starting after offset
  if (it != buf->prepared.end() && it->first < offset + bytes) {
    *at = it->first;
    return &it->second;
  }
  if (it == buf->prepared.begin()) return nullptr;
  --it;  // the last starting at or before offset
  if (it->first + it->second.bytes <= offset) return nullptr;
  *at = it->first;
  return &it->second;
}

// How messages name a prepared entry.
std::string PreparedName(const PreparedWeight& p, uint64_t at) {
  return (p.scales_of_weight ? "the int8 scales prepared with a weight at offset "
                             : "the weight prepared at offset ") +
         std::to_string(at);
}

}  // namespace

struct zaya_backend {
  std::unique_ptr<zaya::cpu::ThreadPool> pool;
  std::string last_error;
  zaya_log_fn log = nullptr;
  void* log_user = nullptr;
  uint64_t allocated = 0;
  // Reused per-step scratch for the MoE (tokens grouped by expert).
  zaya::cpu::AlignedVector<float> moe_x, moe_h, moe_y;
  std::vector<float> cca_g;  // [T, C] grouped-convolution outputs of a CCA op
  std::vector<int64_t> cca_begin;  // first token of each token's run
  zaya::cpu::AttendScratch attend;  // the attention op's chunk partials
  // The last CCA op's RoPE table: cos and sin [T][rope_dims / 2] of its tokens' positions. Every
  // layer of a step has the same positions, so the later layers reuse it (`sincos` in double for
  // each frequency was ~10 us of a 16-token op, in each of the 8B shape's 40 layers).
  struct RopeTable {
    float theta = 0;
    int64_t rope_dims = -1;
    std::vector<int32_t> positions;
    std::vector<float> cs, sn;
  } rope;
  // ZAYA_CPU_PROFILE=1: wall time per op type, printed to stderr when the backend is destroyed.
  zaya::backend_common::OpProfile profile{"ZAYA_CPU_PROFILE"};
};

namespace zaya::cpu {
namespace {

using backend_common::Cols;
using backend_common::Dim;
using backend_common::DTypeSize;
using backend_common::Elements;
using backend_common::ElementsAre;
using backend_common::ExpectDType;
using backend_common::Fail;
using backend_common::Guard;
using backend_common::kMaxHeadParam;
using backend_common::OpError;
using backend_common::Present;
using backend_common::Rows;

// Checked pointer to a tensor's data, which must be of the dtype T stands for (bf16 as uint16_t,
// int8 as int8_t); `what` names the operand in errors.
template <typename T>
T* Ptr(const zaya_tensor& t, const char* what) {
  backend_common::CheckBounds(t, what);
  backend_common::ExpectElementsOf<T>(t, what);
  return reinterpret_cast<T*>(t.buffer->data + t.offset);
}

// A small per-channel vector (norm weight, bias, scale) as f32. Where the operand is f32 it is a
// view of the operand's own memory, not a copy: a copy written by the calling thread sits modified
// in that core's cache, and the pool's other threads then fetch each of its lines from there
// (session 16, 8 rows of a 16-token RMSNorm: the worker's half took 4.7 us against the caller's
// 1.9). A bf16 operand is converted, and an absent one filled, into memory of its own.
class F32Vec {
 public:
  const float* data() const { return view_ != nullptr ? view_ : own_.data(); }
  float operator[](int64_t i) const { return data()[i]; }

 private:
  friend F32Vec VecF32(const zaya_tensor& t, int64_t n, const char* what, float absent);
  std::vector<float> own_;
  const float* view_ = nullptr;
};

F32Vec VecF32(const zaya_tensor& t, int64_t n, const char* what, float absent) {
  F32Vec v;
  if (!Present(t)) {
    v.own_.assign(static_cast<size_t>(n), absent);
    return v;
  }
  if (Elements(t) != n) Fail(std::string(what) + " has " + std::to_string(Elements(t)) +
                             " elements, expected " + std::to_string(n));
  std::vector<float>& out = v.own_;
  if (t.dtype == ZAYA_DTYPE_F32) {
    v.view_ = Ptr<const float>(t, what);
  } else if (t.dtype == ZAYA_DTYPE_BF16) {
    out.resize(static_cast<size_t>(n));
    const uint16_t* p = Ptr<const uint16_t>(t, what);
    for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToF32(p[i]);
  } else {
    Fail(std::string(what) + " must be f32 or bf16");
  }
  return v;
}

Weights WeightsOf(const zaya_tensor& w, const zaya_tensor& scales, int64_t k, const char* what) {
  Weights out;
  switch (w.dtype) {
    case ZAYA_DTYPE_F32: out.type = WType::kF32; out.data = Ptr<const float>(w, what); break;
    case ZAYA_DTYPE_BF16: out.type = WType::kBF16; out.data = Ptr<const uint16_t>(w, what); break;
    case ZAYA_DTYPE_I8: {
      out.type = WType::kI8;
      out.data = Ptr<const int8_t>(w, what);
      // Rows are counted by K and scales come per kI8Group of K: K = 0 would divide by zero.
      if (k <= 0)
        Fail(std::string(what) + ": int8 weights need K > 0, not K = " + std::to_string(k));
      const int64_t rows = Elements(w) / k;
      if (!Present(scales) || Elements(scales) != rows * zaya_i8_scales(k)) {
        Fail(std::string(what) + ": int8 weights [" + std::to_string(rows) + ", " +
             std::to_string(k) + "] need " + std::to_string(rows * zaya_i8_scales(k)) +
             " f32 scales, one per " + std::to_string(kI8Group) + " values of a row (ABI " +
             std::to_string(ZAYA_BACKEND_ABI_MAJOR) + "), not " +
             std::to_string(Present(scales) ? Elements(scales) : 0));
      }
      ExpectDType(scales, ZAYA_DTYPE_F32, "int8 scales");
      out.scales = Ptr<const float>(scales, "int8 scales");
      break;
    }
    default: throw OpError(ZAYA_STATUS_UNSUPPORTED, std::string(what) + ": unsupported weight dtype");
  }
  // A prepared weight may be in a layout of the backend's own; only its own rows, read with its
  // own K, mean anything.
  uint64_t at = 0;
  const uint64_t bytes = static_cast<uint64_t>(Elements(w)) * DTypeSize(w.dtype);
  if (const PreparedWeight* p = PreparedOverlap(w.buffer, w.offset, bytes, &at)) {
    const uint64_t row = static_cast<uint64_t>(k) * DTypeSize(w.dtype);
    if (w.offset < at || p->dtype != w.dtype || p->k != k || (w.offset - at) % row != 0 ||
        w.offset + bytes > at + p->bytes) {
      Fail(std::string(what) + " (" + std::to_string(bytes) + " bytes at offset " +
           std::to_string(w.offset) + ", K " + std::to_string(k) + ") is not whole rows of " +
           PreparedName(*p, at) + " (K " + std::to_string(p->k) +
           "); name prepared weights as they were prepared");
    }
    if (p->scales_of_weight) {
      Fail(std::string(what) + " (" + std::to_string(bytes) + " bytes at offset " +
           std::to_string(w.offset) + ") are the scales of an int8 weight prepared with them, " +
           "kept in the backend's layout; name that weight with them instead");
    }
    // Block layouts (kBf16TileRows == kI8TileRows rows a block).
    if ((p->bf16_tiles || p->i8_blocks) &&
        ((w.offset - at) % (kBf16TileRows * row) != 0 || (bytes / row) % kBf16TileRows != 0)) {
      Fail(std::string(what) + " (" + std::to_string(bytes / row) + " rows from row " +
           std::to_string((w.offset - at) / row) + " of the weight prepared at offset " +
           std::to_string(at) + ") is not whole blocks of " + std::to_string(kBf16TileRows) +
           " rows, the layout this backend keeps prepared " + (p->i8_blocks ? "int8" : "bf16") +
           " weights in; name whole blocks");
    }
    if (p->i8_blocks) {
      // The scales were rearranged with the weight: only the same rows of those scales match.
      const uint64_t first = (w.offset - at) / row;
      const uint64_t want = p->scales_offset + first * static_cast<uint64_t>(k / kI8Group) * 4;
      if (scales.buffer != w.buffer || scales.offset != want) {
        Fail(std::string(what) + ": its int8 scales (offset " + std::to_string(scales.offset) +
             ") are not the ones it was prepared with (offset " + std::to_string(want) +
             " for these rows), which this backend rearranged with it; name those");
      }
      out.data = w.buffer->data + at + first / kI8TileRows * I8BlockBytes(k);
      out.scales = nullptr;
    }
    out.i8_tiles = p->i8_tiles;
    out.bf16_tiles = p->bf16_tiles;
    out.i8_blocks = p->i8_blocks;
  }
  // Scales that the block layout rearranged belong to their weight (checked above); with any other
  // weight they would be read in the wrong order.
  if (out.type == WType::kI8 && !out.i8_blocks) {
    uint64_t sat = 0;
    const uint64_t sbytes = static_cast<uint64_t>(Elements(scales)) * 4;
    if (const PreparedWeight* sp = PreparedOverlap(scales.buffer, scales.offset, sbytes, &sat)) {
      Fail(std::string(what) + ": its int8 scales (offset " + std::to_string(scales.offset) +
           ") overlap " + PreparedName(*sp, sat) +
           (sp->scales_of_weight ? ", rearranged with that weight" : "") +
           "; give this weight scales of its own");
    }
  }
  return out;
}


void OpEmbed(zaya_backend* b, const zaya_op& op) {
  const int64_t t = Elements(op.src[0]);
  ExpectDType(op.src[0], ZAYA_DTYPE_I32, "embed ids");
  const int32_t* ids = Ptr<const int32_t>(op.src[0], "embed ids");
  if (op.src[1].ndim != 2) {
    Fail("embed: the table must be [V, H], not " + backend_common::ShapeText(op.src[1]));
  }
  const int64_t v = Dim(op.src[1], 0), h = Cols(op.src[1]);
  const auto bias = VecF32(op.src[2], h, "embed bias", 0.f);
  const auto scale = VecF32(op.src[3], h, "embed scale", 1.f);
  if (Elements(op.dst[0]) != t * h) Fail("embed output must be [T,H]");
  float* out = Ptr<float>(op.dst[0], "embed output");
  Weights table = WeightsOf(op.src[1], op.src[4], h, "embedding table");
  for (int64_t i = 0; i < t; ++i) {
    if (ids[i] < 0 || ids[i] >= v) {
      Fail("token id " + std::to_string(ids[i]) + " outside the vocabulary of " + std::to_string(v));
    }
  }
  b->pool->ParallelFor(t, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = out + i * h;
      RowToF32(table, ids[i], h, row);
      for (int64_t j = 0; j < h; ++j) row[j] = (row[j] + bias[j]) * scale[j];
    }
  });
}

void OpRmsNorm(zaya_backend* b, const zaya_op& op) {
  const int64_t n = Cols(op.src[0]), t = Rows(op.src[0]);
  if (Elements(op.dst[0]) != t * n) Fail("rmsnorm output shape differs from input");
  const auto w = VecF32(op.src[1], n, "rmsnorm weight", 1.f);
  RmsNorm(*b->pool, Ptr<const float>(op.src[0], "rmsnorm input"), w.data(), nullptr, t, n, op.f[0],
          Ptr<float>(op.dst[0], "rmsnorm output"));
}

// A matmul op, checked and resolved to pointers; `bias` holds the op's bias as f32 (job.bias
// points into it, or is null without one).
struct MatMulArgs {
  const float* x = nullptr;
  int64_t t = 0, k = 0;
  MatVecJob job;
  F32Vec bias;
};

MatMulArgs PrepareMatMul(const zaya_op& op) {
  MatMulArgs a;
  const backend_common::MatMulSizes sizes = backend_common::CheckMatMulSizes(op);
  a.t = sizes.t;
  a.k = sizes.k;
  a.job.n = sizes.n;
  if (Present(op.src[2])) a.bias = VecF32(op.src[2], a.job.n, "matmul bias", 0.f);
  if (op.i[0] < 0 || op.i[0] > 2) Fail("matmul: unknown activation");
  a.x = Ptr<const float>(op.src[0], "matmul x");
  a.job.w = WeightsOf(op.src[1], op.src[3], a.k, "matmul W");
  a.job.bias = Present(op.src[2]) ? a.bias.data() : nullptr;
  a.job.act = static_cast<Act>(op.i[0]);
  a.job.y = Ptr<float>(op.dst[0], "matmul output");
  return a;
}

void OpMatMul(zaya_backend* b, const zaya_op& op) {
  const MatMulArgs a = PrepareMatMul(op);
  MatMul(*b->pool, a.x, a.t, a.k, a.job.w, a.job.n, a.job.bias, a.job.act, a.job.y);
}

// How many matmuls from ops[i] on share one x and can run as one parallel region: the model's
// four projections of CCA's input (q, k, v_cur, v_del) at decode are four regions of a few
// hundred KB each otherwise. 1 when ops[i] is not such a matmul.
uint64_t SharedXRun(const zaya_op* ops, uint64_t i, uint64_t n) {
  const zaya_tensor& x = ops[i].src[0];
  if (ops[i].type != ZAYA_OP_MATMUL || x.buffer == nullptr || x.ndim < 1) return 1;
  int64_t t = 1;
  for (int d = 0; d + 1 < x.ndim; ++d) t *= x.shape[d];
  if (t >= kGemmMinTokens || x.shape[x.ndim - 1] < 16) return 1;
  uint64_t j = i + 1;
  while (j < n && ops[j].type == ZAYA_OP_MATMUL) {
    const zaya_tensor& y = ops[j].src[0];
    if (y.buffer != x.buffer || y.offset != x.offset || y.dtype != x.dtype || y.ndim != x.ndim ||
        !std::equal(x.shape, x.shape + x.ndim, y.shape)) {
      break;
    }
    ++j;
  }
  return j - i;
}

void OpMulAdd(zaya_backend*, const zaya_op& op) {
  const int64_t n = Cols(op.src[0]), t = Rows(op.src[0]);
  const auto s = VecF32(op.src[2], n, "mul_add scale", 1.f);
  if (Elements(op.src[1]) != t * n || Elements(op.dst[0]) != t * n) Fail("mul_add shapes differ");
  const float* a = Ptr<const float>(op.src[0], "mul_add a");
  const float* c = Ptr<const float>(op.src[1], "mul_add b");
  float* out = Ptr<float>(op.dst[0], "mul_add output");
  MulAddRows(a, c, s.data(), t, n, out);
}

void OpMerge(zaya_backend* b, const zaya_op& op) {
  const int64_t n = Cols(op.src[0]), t = Rows(op.src[0]);
  if (Elements(op.dst[0]) != t * n) Fail("merge: residual and branch shapes differ");
  const auto bh = VecF32(op.src[1], n, "merge branch bias", 0.f);
  const auto sh = VecF32(op.src[2], n, "merge branch scale", 1.f);
  const auto br = VecF32(op.src[3], n, "merge residual bias", 0.f);
  const auto sr = VecF32(op.src[4], n, "merge residual scale", 1.f);
  const float* x = Ptr<const float>(op.src[0], "merge branch");
  float* h = Ptr<float>(op.dst[0], "merge residual");
  MergeRows(*b->pool, x, bh.data(), sh.data(), br.data(), sr.data(), t, n, h);
}

// cos/sin of one position for the rope_dims/2 frequencies theta^(-2i/rope_dims), in double as the
// reference computes them; shared by every head of the token.
// inv_freq[i] = theta^(-2i / rope_dims) for i < rope_dims / 2: the same for every token of an op,
// so computed once per op (a pow per value and token was half of RopeAngles' ~1.5 us a token).
std::vector<double> RopeFrequencies(int64_t rope_dims, float theta) {
  std::vector<double> inv_freq(static_cast<size_t>(rope_dims / 2));
  for (int64_t i = 0; i < rope_dims / 2; ++i) {
    inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / rope_dims);
  }
  return inv_freq;
}

void RopeAngles(const std::vector<double>& inv_freq, int32_t pos, float* cos_out, float* sin_out) {
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    // In double: positions reach 10^5 and more, where a float angle has lost its fraction.
    double s = 0, c = 0;
    ::sincos(static_cast<double>(pos) * inv_freq[i], &s, &c);
    cos_out[i] = static_cast<float>(c);
    sin_out[i] = static_cast<float>(s);
  }
}

// b->rope for these positions, theta and rope_dims: reused where the last CCA op had the same
// (the next layers of a step), else computed on all threads.
const zaya_backend::RopeTable& RopeTableFor(zaya_backend* b, int64_t rope_dims, float theta,
                                            const int32_t* position, int64_t t) {
  auto& r = b->rope;
  if (r.rope_dims == rope_dims && r.theta == theta &&
      static_cast<int64_t>(r.positions.size()) == t &&
      std::equal(position, position + t, r.positions.begin())) {
    return r;
  }
  const int64_t half = rope_dims / 2;
  r.rope_dims = -1;  // not valid until filled (a throw below leaves it so)
  r.positions.assign(position, position + t);
  r.cs.resize(static_cast<size_t>(t * half));
  r.sn.resize(r.cs.size());
  const std::vector<double> inv_freq = RopeFrequencies(rope_dims, theta);
  b->pool->ParallelFor(t, 4, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      RopeAngles(inv_freq, position[i], r.cs.data() + i * half, r.sn.data() + i * half);
    }
  });
  r.theta = theta;
  r.rope_dims = rope_dims;
  return r;
}

// Depthwise k=2 over a CCA stream, one head group of hd channels: d_{i-1} from s_{i-2}, s_{i-1};
// d_i from s_{i-1}, s_i; interleaved into x to match the grouped weight's [hd, 2] rows. w: hd
// (w0, w1) pairs. The restrict qualifiers let GCC vectorize it (as written in OpCca it stayed
// scalar: x might have aliased the stream).
void DepthwisePair(const float* __restrict p2, const float* __restrict p1,
                   const float* __restrict p0, const float* __restrict w,
                   const float* __restrict bias, int64_t hd, float* __restrict x) {
  for (int64_t j = 0; j < hd; ++j) {
    const float w0 = w[2 * j], w1 = w[2 * j + 1];
    x[2 * j] = w0 * p2[j] + w1 * p1[j] + bias[j];
    x[2 * j + 1] = w0 * p1[j] + w1 * p0[j] + bias[j];
  }
}

void OpCca(zaya_backend* b, const zaya_op& op) {
  const int64_t nh = op.i[0], nkv = op.i[1], hd = op.i[2], rope_dims = op.i[3];
  if (nh <= 0 || nkv <= 0 || hd <= 0 || nh % nkv != 0 || nkv % 2 != 0 || rope_dims < 0 ||
      rope_dims > hd || rope_dims % 2 != 0) {
    Fail("cca: bad head configuration");
  }
  if (nh > kMaxHeadParam || hd > kMaxHeadParam) {
    Fail("cca: head counts and head_dim must be at most " + std::to_string(kMaxHeadParam));
  }
  const int64_t qd = nh * hd, kd = nkv * hd, c = qd + kd, vh = kd / 2, t = Rows(op.src[0]);
  if (!ElementsAre(op.src[0], {t, qd}) || !ElementsAre(op.src[1], {t, kd})) {
    Fail("cca: q0 must be [T,nh*hd] and k0 [T,nkv*hd]");
  }
  const float* q0_all = Ptr<const float>(op.src[0], "cca q0");
  const float* k0_all = Ptr<const float>(op.src[1], "cca k0");
  const float* vcur = Ptr<const float>(op.src[2], "cca vcur");
  const float* vdel = Ptr<const float>(op.src[3], "cca vdel");
  if (!ElementsAre(op.src[2], {t, vh}) || !ElementsAre(op.src[3], {t, vh})) {
    Fail("cca: vcur and vdel must be [T, nkv*hd/2]");
  }
  if (!ElementsAre(op.src[4], {c, 2}) || !ElementsAre(op.src[6], {c, hd, 2})) {
    Fail("cca: conv weight shapes must be [C,1,2] and [C,hd,2]");
  }
  const auto dw = VecF32(op.src[4], c * 2, "cca depthwise weight", 0.f);
  const auto db = VecF32(op.src[5], c, "cca depthwise bias", 0.f);
  // The grouped weights (C x hd x 2, 1.3 MB in f32 for ZAYA1) are read in place, never copied: each
  // output channel's [hd, 2] row is a matvec row over the interleaved (d_prev, d_cur) of its group.
  if (op.src[6].dtype != ZAYA_DTYPE_F32 && op.src[6].dtype != ZAYA_DTYPE_BF16) {
    Fail("cca grouped weight must be f32 or bf16");
  }
  const Weights gw = WeightsOf(op.src[6], zaya_tensor{}, hd * 2, "cca grouped weight");
  // Each head group's hd rows are multiplied on their own: in a layout of 16-row blocks they must
  // be whole blocks (prepared as [C / hd, hd, 2 hd], a weight is only kept so where they are).
  if (gw.bf16_tiles && hd % kBf16TileRows != 0) {
    Fail("cca grouped weight: prepared as rows in blocks of " + std::to_string(kBf16TileRows) +
         ", which head groups of head_dim " + std::to_string(hd) +
         " rows split; prepare it as [C / head_dim, head_dim, 2 head_dim]");
  }
  const auto gb = VecF32(op.src[7], c, "cca grouped bias", 0.f);
  const auto temp = VecF32(op.src[8], nkv, "cca temp", 1.f);
  float* q_out = Ptr<float>(op.dst[0], "cca q");
  float* k_out = Ptr<float>(op.dst[1], "cca k");
  float* v_out = Ptr<float>(op.dst[2], "cca v");
  if (!ElementsAre(op.dst[0], {t, qd}) || !ElementsAre(op.dst[1], {t, kd}) ||
      !ElementsAre(op.dst[2], {t, kd})) {
    Fail("cca: output shapes must be [T,nh*hd], [T,nkv*hd], [T,nkv*hd]");
  }
  float* conv_state = Ptr<float>(op.dst[3], "cca conv state");
  float* v_state = Ptr<float>(op.dst[4], "cca value state");
  const int64_t slots = Dim(op.dst[3], 0);
  if (Elements(op.dst[3]) != slots * 2 * c || Elements(op.dst[4]) != slots * vh) {
    Fail("cca: state shapes must be [slots,2,C] and [slots,nkv*hd/2]");
  }
  const int32_t* seq_of_token = Ptr<const int32_t>(op.aux[0], "cca seq_of_token");
  const int32_t* slot_of_seq = Ptr<const int32_t>(op.aux[1], "cca slot_of_seq");
  const int32_t* position = Ptr<const int32_t>(op.aux[2], "cca position");
  if (Elements(op.aux[0]) < t || Elements(op.aux[2]) < t) {
    Fail("cca: seq_of_token and position need one entry per token");
  }
  const int64_t n_seq = Elements(op.aux[1]);
  const float eps = op.f[1] > 0 ? op.f[1] : std::numeric_limits<float>::epsilon();
  const float sqrt_hd = std::sqrt(static_cast<float>(hd));
  const int64_t q_per_kv = nh / nkv;

  // Each sequence's tokens form one contiguous run. The conv stream of a run is s_i = [q0_i, k0_i];
  // before its first token b the slot's conv state holds s_{b-2} and s_{b-1}. Every token's
  // convolutions depend only on inputs and the old state, so they run in parallel (phase 1: head
  // group x chunk of tokens, phase 2: token); the state is rewritten last (phase 3).
  const backend_common::CcaRuns token_runs =
      backend_common::CcaTokenRuns(seq_of_token, t, slot_of_seq, n_seq, slots);
  const std::vector<int32_t>& run_start = token_runs.begin;
  std::vector<int64_t>& begin_of = b->cca_begin;
  begin_of.resize(static_cast<size_t>(t));
  for (size_t r = 0; r + 1 < run_start.size(); ++r) {
    std::fill(begin_of.begin() + run_start[r], begin_of.begin() + run_start[r + 1], run_start[r]);
  }
  const int64_t runs = static_cast<int64_t>(run_start.size()) - 1;
  // Head group g (hd channels, all in q for g < nh, all in k after) of stream value s_j, j >= b-2.
  auto stream = [&](int64_t j, int64_t begin, int64_t g) -> const float* {
    if (j >= begin) return g < nh ? q0_all + j * qd + g * hd : k0_all + j * kd + (g - nh) * hd;
    const int32_t slot = slot_of_seq[seq_of_token[begin]];
    return conv_state + slot * 2 * c + (j - begin + 2) * c + g * hd;
  };
  const int64_t groups = c / hd;
  std::vector<float>& g_all = b->cca_g;
  g_all.resize(static_cast<size_t>(t * c));
  // Work units are (head group, chunk of up to 32 tokens): the group's depthwise outputs for the
  // chunk's tokens, then one matvec of the chunk through the group's weights, so a batch reads each
  // weight row once per chunk, through the batched tiles, instead of once per token. The chunk's
  // inputs (32 x 2hd floats) stay in L1/L2. Chunks shrink while there would be fewer than two units
  // per thread, so a many-core machine still has work for every thread at small batches.
  const int64_t per_chunk = std::clamp<int64_t>(t * groups / (2 * b->pool->size()), 1, 32);
  const int64_t chunks = (t + per_chunk - 1) / per_chunk;
  b->pool->ParallelFor(chunks * groups, 1, [&](int64_t u0, int64_t u1, int) {
    thread_local std::vector<float> x;
    x.resize(static_cast<size_t>(per_chunk * 2 * hd));
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t g = u % groups, base = g * hd, i0 = u / groups * per_chunk;
      const int64_t i1 = std::min(t, i0 + per_chunk);
      for (int64_t i = i0; i < i1; ++i) {
        const float* p2 = stream(i - 2, begin_of[i], g);
        const float* p1 = stream(i - 1, begin_of[i], g);
        const float* p0 = stream(i, begin_of[i], g);
        DepthwisePair(p2, p1, p0, dw.data() + base * 2, db.data() + base, hd,
                      x.data() + (i - i0) * 2 * hd);
      }
      MatVecRows(gw, base, base + hd, 2 * hd, x.data(), i1 - i0, c, gb.data(), Act::kNone,
                 g_all.data() + i0 * c);
    }
  });
  const auto& rope = RopeTableFor(b, rope_dims, op.f[0], position, t);
  const int64_t half = rope_dims / 2;
  b->pool->ParallelFor(t, 4, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* q0 = q0_all + i * qd;
      const float* k0 = k0_all + i * kd;
      const float* g = g_all.data() + i * c;
      const float* cs = rope.cs.data() + i * half;
      const float* sn = rope.sn.data() + i * half;
      float* q = q_out + i * qd;
      float* k = k_out + i * kd;
      for (int64_t hq = 0; hq < nh; ++hq) {
        const int64_t kvh = hq / q_per_kv;
        for (int64_t j = 0; j < hd; ++j) {
          q[hq * hd + j] = g[hq * hd + j] + 0.5f * (q0[hq * hd + j] + k0[kvh * hd + j]);
        }
        L2ScaleRope(q + hq * hd, hd, sqrt_hd, eps, rope_dims, cs, sn);
      }
      for (int64_t hk = 0; hk < nkv; ++hk) {
        for (int64_t j = 0; j < hd; ++j) {
          float mean_q = 0.f;
          for (int64_t m = 0; m < q_per_kv; ++m) mean_q += q0[(hk * q_per_kv + m) * hd + j];
          mean_q /= static_cast<float>(q_per_kv);
          k[hk * hd + j] = g[qd + hk * hd + j] + 0.5f * (mean_q + k0[hk * hd + j]);
        }
        L2ScaleRope(k + hk * hd, hd, sqrt_hd * temp[hk], eps, rope_dims, cs, sn);
      }
    }
  });
  // Phase 3, per run: v_i = [vcur_i, vdel_{i-1}] (the slot's value state before the run's first
  // token), then the run's last stream values and vdel become the slot's state. Runs have slots of
  // their own (checked above), so they go to all threads: the states miss in cache after a
  // layer's MoE, ~15 us of copies for 16 one-token runs on one thread.
  auto phase3 = [&](int64_t r) {
    const int64_t begin = run_start[r], end = run_start[r + 1];
    const int32_t slot = token_runs.slot[r];
    float* cst = conv_state + slot * 2 * c;
    float* vs = v_state + slot * vh;
    for (int64_t i = begin; i < end; ++i) {
      float* v = v_out + i * kd;
      std::copy(vcur + i * vh, vcur + (i + 1) * vh, v);
      const float* last = i > begin ? vdel + (i - 1) * vh : vs;
      std::copy(last, last + vh, v + vh);
    }
    std::copy(vdel + (end - 1) * vh, vdel + end * vh, vs);
    auto put = [&](int64_t j, float* dst) {  // s_j, j >= begin, into a state row
      std::copy(q0_all + j * qd, q0_all + (j + 1) * qd, dst);
      std::copy(k0_all + j * kd, k0_all + (j + 1) * kd, dst + qd);
    };
    if (end - begin >= 2) {
      put(end - 2, cst);
    } else {
      std::copy(cst + c, cst + 2 * c, cst);  // the old s_{b-1} becomes s_{end-2}
    }
    put(end - 1, cst + c);
  };
  b->pool->ParallelFor(runs, 4, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) phase3(r);
  });
}

void OpAttention(zaya_backend* b, const zaya_op& op) {
  const int64_t nh = op.i[0], nkv = op.i[1], hd = op.i[2], bt = op.i[3];
  if (nh <= 0 || nkv <= 0 || hd <= 0 || bt <= 0 || nh % nkv != 0) Fail("attention: bad heads");
  if (nh > kMaxHeadParam || hd > kMaxHeadParam || bt > kMaxHeadParam) {
    Fail("attention: head counts, head_dim and block_tokens must be at most " +
         std::to_string(kMaxHeadParam));
  }
  const int64_t t = Rows(op.src[0]);
  const float* q = Ptr<const float>(op.src[0], "attention q");
  const float* k = Ptr<const float>(op.src[1], "attention k");
  const float* v = Ptr<const float>(op.src[2], "attention v");
  if (!ElementsAre(op.src[0], {t, nh, hd}) || !ElementsAre(op.src[1], {t, nkv, hd}) ||
      !ElementsAre(op.src[2], {t, nkv, hd})) {
    Fail("attention: q/k/v shapes");
  }
  if (!ElementsAre(op.dst[0], {t, nh, hd})) {
    Fail("attention: output must be [T, nh*hd] ([" + std::to_string(t) + ", " +
         std::to_string(nh * hd) + "] values), not " + std::to_string(Elements(op.dst[0])));
  }
  float* out = Ptr<float>(op.dst[0], "attention output");
  const zaya_tensor& kc = op.dst[1];
  const zaya_tensor& vc = op.dst[2];
  if (kc.dtype != vc.dtype ||
      (kc.dtype != ZAYA_DTYPE_F32 && kc.dtype != ZAYA_DTYPE_BF16 && kc.dtype != ZAYA_DTYPE_I8)) {
    Fail("attention: caches must both be f32, bf16 or i8");
  }
  const KvType type = kc.dtype == ZAYA_DTYPE_BF16 ? KvType::kBf16
                      : kc.dtype == ZAYA_DTYPE_I8 ? KvType::kI8
                                                  : KvType::kF32;
  const int64_t blocks = Dim(kc, 0);
  if (!ElementsAre(kc, {blocks, bt, nkv, hd}) || Elements(vc) != Elements(kc)) {
    Fail("attention: cache shape must be [blocks, block_tokens, nkv, hd]");
  }
  std::byte* kbase = nullptr;
  std::byte* vbase = nullptr;
  float* kscale = nullptr;
  float* vscale = nullptr;
  if (type == KvType::kBf16) {
    kbase = reinterpret_cast<std::byte*>(Ptr<uint16_t>(kc, "K cache"));
    vbase = reinterpret_cast<std::byte*>(Ptr<uint16_t>(vc, "V cache"));
  } else if (type == KvType::kI8) {
    kbase = reinterpret_cast<std::byte*>(Ptr<int8_t>(kc, "K cache"));
    vbase = reinterpret_cast<std::byte*>(Ptr<int8_t>(vc, "V cache"));
    backend_common::CheckKvScales(op, blocks, bt, nkv);
    kscale = Ptr<float>(op.dst[3], "K cache scales");
    vscale = Ptr<float>(op.dst[4], "V cache scales");
  } else {
    kbase = reinterpret_cast<std::byte*>(Ptr<float>(kc, "K cache"));
    vbase = reinterpret_cast<std::byte*>(Ptr<float>(vc, "V cache"));
  }
  const int32_t* seq_of_token = Ptr<const int32_t>(op.aux[0], "attention seq_of_token");
  const int32_t* table = Ptr<const int32_t>(op.aux[1], "attention block table");
  const int32_t* position = Ptr<const int32_t>(op.aux[2], "attention position");
  if (Elements(op.aux[0]) < t || Elements(op.aux[2]) < t) {
    Fail("attention: seq_of_token and position need one entry per token");
  }
  if (op.aux[1].ndim != 2) {
    Fail("attention: block table must be [S, max_blocks], not " +
         backend_common::ShapeText(op.aux[1]));
  }
  const int64_t n_seq = Dim(op.aux[1], 0), max_blocks = Cols(op.aux[1]);
  const int64_t row = nkv * hd;
  // Before anything is written, so that the chunks in the pool read only blocks that exist.
  backend_common::CheckAttentionBlocks(seq_of_token, position, t, table, n_seq, max_blocks, bt,
                                       blocks);
  auto slot_of = [&](int64_t seq, int64_t pos) {
    return (static_cast<int64_t>(table[seq * max_blocks + pos / bt]) * bt + pos % bt) * row;
  };
  auto store = [&](std::byte* base, float* scales, int64_t at, const float* src) {
    if (type == KvType::kBf16) {
      uint16_t* d = reinterpret_cast<uint16_t*>(base) + at;
      for (int64_t j = 0; j < row; ++j) {
        uint32_t bits;
        std::memcpy(&bits, src + j, 4);
        bits += 0x7fff + ((bits >> 16) & 1);  // round to nearest even
        d[j] = static_cast<uint16_t>(bits >> 16);
      }
    } else if (type == KvType::kI8) {
      for (int64_t h = 0; h < nkv; ++h) {
        QuantizeKvRow(src + h * hd, hd, reinterpret_cast<int8_t*>(base) + at + h * hd,
                      scales + at / hd + h);
      }
    } else {
      std::memcpy(reinterpret_cast<float*>(base) + at, src, row * sizeof(float));
    }
  };
  for (int64_t i = 0; i < t; ++i) {
    const int64_t at = slot_of(seq_of_token[i], position[i]);
    store(kbase, kscale, at, k + i * row);
    store(vbase, vscale, at, v + i * row);
  }
  const KvCacheView view{kbase, vbase, type, kscale, vscale, blocks, bt, nkv, hd};
  Attend(*b->pool, q, t, nh, view, table, max_blocks, seq_of_token, position, op.f[0], out,
         &b->attend);
}

void OpRouterSelect(zaya_backend*, const zaya_op& op) {
  const int64_t e1 = Cols(op.src[0]), t = Rows(op.src[0]);
  const float* logits = Ptr<const float>(op.src[0], "router logits");
  const auto bias = VecF32(op.src[1], e1, "balancing biases", 0.f);
  int32_t* expert = Ptr<int32_t>(op.dst[0], "router expert");
  float* weight = Ptr<float>(op.dst[1], "router weight");
  if (Elements(op.dst[0]) != t || Elements(op.dst[1]) != t) Fail("router outputs must be [T]");
  std::vector<float> p(e1);
  for (int64_t i = 0; i < t; ++i) {
    const float* l = logits + i * e1;
    const float mx = *std::max_element(l, l + e1);
    double sum = 0.0;
    for (int64_t j = 0; j < e1; ++j) {
      p[j] = std::exp(l[j] - mx);
      sum += p[j];
    }
    int64_t best = 0;
    float best_v = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < e1; ++j) {
      p[j] = static_cast<float>(p[j] / sum);
      if (p[j] + bias[j] > best_v) {  // strict: ties go to the lowest index, like torch.argmax
        best_v = p[j] + bias[j];
        best = j;
      }
    }
    expert[i] = static_cast<int32_t>(best);
    weight[i] = p[best];
  }
}

void OpMoe(zaya_backend* b, const zaya_op& op) {
  const int64_t h = Cols(op.src[0]), t = Rows(op.src[0]);
  const int64_t e = op.i[0];
  const zaya_tensor& gu = op.src[1];
  const zaya_tensor& dn = op.src[2];
  if (gu.ndim != 3 || dn.ndim != 3 || gu.shape[0] != e || dn.shape[0] != e || gu.shape[2] != h ||
      dn.shape[1] != h || gu.shape[1] != 2 * dn.shape[2]) {
    Fail("moe: weights must be gate_up [E,2I,H] and down [E,H,I]");
  }
  const int64_t inter = dn.shape[2];
  const float* x = Ptr<const float>(op.src[0], "moe x");
  const int32_t* expert = Ptr<const int32_t>(op.src[3], "moe expert");
  const float* weight = Ptr<const float>(op.src[4], "moe weight");
  if (Elements(op.src[3]) < t || Elements(op.src[4]) < t)
    Fail("moe: expert and weight must be [T]");
  float* out = Ptr<float>(op.dst[0], "moe output");
  if (Elements(op.dst[0]) != t * h) Fail("moe output must be [T,H]");
  Weights gu_all = WeightsOf(gu, op.src[5], h, "moe gate_up");
  Weights dn_all = WeightsOf(dn, op.src[6], inter, "moe down");
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(e));
  for (int64_t i = 0; i < t; ++i) {
    if (expert[i] < 0 || expert[i] > e) Fail("moe: expert index out of range");
    if (expert[i] < e) {
      groups[expert[i]].push_back(i);
    } else {  // the skip expert adds nothing; every other row is written whole below
      std::fill(out + i * h, out + (i + 1) * h, 0.f);
    }
  }
  auto expert_view = [](const Weights& all, int64_t ex, int64_t rows, int64_t k) {
    Weights w = all;
    const int64_t elems = ex * rows * k;
    switch (all.type) {
      case WType::kF32: w.data = static_cast<const float*>(all.data) + elems; break;
      case WType::kBF16: w.data = static_cast<const uint16_t*>(all.data) + elems; break;
      case WType::kI8:
        if (all.i8_blocks) {  // blocks of 16 rows with their scales (kernels.h PackI8Blocks)
          w.data =
              static_cast<const uint8_t*>(all.data) + ex * rows / kI8TileRows * I8BlockBytes(k);
        } else {
          w.data = static_cast<const int8_t*>(all.data) + elems;
          w.scales = all.scales + ex * rows * zaya_i8_scales(k);
        }
        break;
    }
    return w;
  };
  for (int64_t ex = 0; ex < e; ++ex) {
    const auto& idx = groups[ex];
    if (idx.empty()) continue;
    const int64_t n = static_cast<int64_t>(idx.size());
    b->moe_x.resize(n * h);
    b->moe_h.resize(n * 2 * inter);
    for (int64_t r = 0; r < n; ++r) std::copy(x + idx[r] * h, x + (idx[r] + 1) * h, b->moe_x.begin() + r * h);
    MatMul(*b->pool, b->moe_x.data(), n, h, expert_view(gu_all, ex, 2 * inter, h), 2 * inter, nullptr,
           Act::kNone, b->moe_h.data());
    // SwiGLU, compacted to [n, I] rows for the down projection: silu(G) * U into moe_y, on all
    // threads (SiluMul: n x I exps in SIMD). The down projection then writes moe_x, whose rows
    // the gate/up projection no longer needs.
    b->moe_y.resize(n * inter);
    b->pool->ParallelFor(n * inter, 1024, [&](int64_t c0, int64_t c1, int) {
      while (c0 < c1) {  // [c0, c1) in pieces within one token's row
        const int64_t i = c0 / inter, j = c0 % inter, len = std::min(c1 - c0, inter - j);
        const float* row = b->moe_h.data() + i * 2 * inter;
        SiluMul(row + j, row + inter + j, len, b->moe_y.data() + c0);
        c0 += len;
      }
    });
    MatMul(*b->pool, b->moe_y.data(), n, inter, expert_view(dn_all, ex, h, inter), h, nullptr,
           Act::kNone, b->moe_x.data());
    for (int64_t r = 0; r < n; ++r) {
      const float w = weight[idx[r]];
      float* o = out + idx[r] * h;
      const float* y = b->moe_x.data() + r * h;
      for (int64_t j = 0; j < h; ++j) o[j] = w * y[j];
    }
  }
}

void OpGatherRows(zaya_backend*, const zaya_op& op) {
  const int64_t n = Cols(op.src[0]), rows = Rows(op.src[0]);
  const int64_t r = Elements(op.aux[0]);
  const float* src = Ptr<const float>(op.src[0], "gather source");
  const int32_t* idx = Ptr<const int32_t>(op.aux[0], "gather index");
  float* dst = Ptr<float>(op.dst[0], "gather output");
  if (Elements(op.dst[0]) != r * n) Fail("gather output must be [R,N]");
  for (int64_t i = 0; i < r; ++i) {
    if (idx[i] < 0 || idx[i] >= rows) Fail("gather index out of range");
    std::copy(src + idx[i] * n, src + (idx[i] + 1) * n, dst + i * n);
  }
}

void OpCopy(zaya_backend*, const zaya_op& op) {
  const uint64_t n = static_cast<uint64_t>(op.i[0]);
  const zaya_tensor& s = op.src[0];
  const zaya_tensor& d = op.dst[0];
  if (s.buffer == nullptr || d.buffer == nullptr) Fail("copy needs a source and a destination");
  if (s.offset > s.buffer->bytes || n > s.buffer->bytes - s.offset || d.offset > d.buffer->bytes ||
      n > d.buffer->bytes - d.offset) {
    Fail("copy of " + std::to_string(n) + " bytes runs outside a buffer");
  }
  // As buffer_write: a prepared weight's bytes are in the backend's layout, and read-only.
  uint64_t at = 0;
  if (const PreparedWeight* p = PreparedOverlap(d.buffer, d.offset, n, &at)) {
    Fail("copy of " + std::to_string(n) + " bytes to offset " + std::to_string(d.offset) +
         " overlaps " + PreparedName(*p, at) +
         " (weight_prepare); a prepared weight is read-only, copy into it before preparing");
  }
  std::memmove(d.buffer->data + d.offset, s.buffer->data + s.offset, n);
}

void Execute(zaya_backend* b, const zaya_op& op) {
  switch (op.type) {
    case ZAYA_OP_EMBED: return OpEmbed(b, op);
    case ZAYA_OP_RMSNORM: return OpRmsNorm(b, op);
    case ZAYA_OP_MATMUL: return OpMatMul(b, op);
    case ZAYA_OP_MUL_ADD: return OpMulAdd(b, op);
    case ZAYA_OP_MERGE: return OpMerge(b, op);
    case ZAYA_OP_CCA: return OpCca(b, op);
    case ZAYA_OP_ATTENTION: return OpAttention(b, op);
    case ZAYA_OP_ROUTER_SELECT: return OpRouterSelect(b, op);
    case ZAYA_OP_MOE: return OpMoe(b, op);
    case ZAYA_OP_GATHER_ROWS: return OpGatherRows(b, op);
    case ZAYA_OP_COPY: return OpCopy(b, op);
    default:
      throw OpError(ZAYA_STATUS_UNSUPPORTED, "op type " + std::to_string(op.type) + " is unknown");
  }
}

zaya_status Create(const zaya_backend_options* options, zaya_backend** out) {
  if (out == nullptr) return ZAYA_STATUS_INVALID_ARGUMENT;
  *out = nullptr;
  return Guard(static_cast<zaya_backend*>(nullptr), [&] {
    int threads = 0;
    // Owned here until it is complete, so that a failure part-way frees it.
    auto b = std::make_unique<zaya_backend>();
    // A member exists in the host's struct only where struct_size covers all of it; log is of
    // no use without its log_user.
    if (options != nullptr) {
      const uint32_t size = options->struct_size;
      if (size >= offsetof(zaya_backend_options, threads) + sizeof(options->threads)) {
        threads = options->threads;
      }
      if (size >= offsetof(zaya_backend_options, log_user) + sizeof(options->log_user)) {
        b->log = options->log;
        b->log_user = options->log_user;
      }
    }
    if (threads <= 0) threads = std::clamp(get_nprocs(), 1, ThreadPool::kMaxThreads);
    if (threads > ThreadPool::kMaxThreads) {
      const std::string m = "cpu backend: " + std::to_string(threads) +
                            " threads asked for, at most " +
                            std::to_string(ThreadPool::kMaxThreads) + "; set backend.threads lower";
      if (b->log != nullptr) b->log(b->log_user, 3, m.c_str());
      throw OpError(ZAYA_STATUS_INVALID_ARGUMENT, m);
    }
    // OpenBLAS runs single-threaded inside our own pool's chunks.
    openblas_set_num_threads(1);
    try {
      b->pool = std::make_unique<ThreadPool>(threads);
    } catch (const std::system_error& e) {
      // create() has no instance for last_error: the log is the only place for the reason.
      const std::string m = "cpu backend: cannot start " + std::to_string(threads) + " threads (" +
                            e.what() + "); set backend.threads lower";
      if (b->log != nullptr) b->log(b->log_user, 3, m.c_str());
      throw OpError(ZAYA_STATUS_OUT_OF_MEMORY, m);
    }
    if (b->log != nullptr) {
      if (*IsaEnvError() != '\0') b->log(b->log_user, 4, IsaEnvError());
      static constexpr const char* kTiles[] = {"portable", "AVX2+FMA", "AVX-512 BF16/VNNI",
                                               "AVX-512 BF16/VNNI and AMX-BF16"};
      const std::string m = "cpu backend: " + std::to_string(threads) + " threads, " +
                            kTiles[static_cast<int>(MatVecIsa())] + " matvec tiles" +
                            (*AmxNote() != '\0' ? std::string(" (no AMX: ") + AmxNote() + ")" : "");
      b->log(b->log_user, 6, m.c_str());
      std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
      std::string modes;
      const bool read = static_cast<bool>(std::getline(thp, modes));
      const std::string note =
          zaya::backend_common::HugePagesUnavailable(read ? modes.c_str() : nullptr);
      if (!note.empty()) b->log(b->log_user, 4, ("cpu backend: " + note).c_str());
    }
    *out = b.release();
    return ZAYA_STATUS_OK;
  });
}

void Destroy(zaya_backend* b) {
  if (b != nullptr && b->profile.enabled()) b->profile.Print("cpu", "wall time per op");
  delete b;
}

const char* LastError(zaya_backend* b) { return b != nullptr ? b->last_error.c_str() : ""; }

zaya_status DeviceInfo(zaya_backend* b, zaya_device_info* out) {
  if (b == nullptr || out == nullptr) return ZAYA_STATUS_INVALID_ARGUMENT;
  zaya_device_info info{};
  info.struct_size = sizeof(info);
  info.kind = ZAYA_DEVICE_CPU;
  // The tile level in the name, so that a benchmark's report says which kernels it measured.
  std::snprintf(info.name, sizeof(info.name), "cpu (%d threads, %s tiles)", b->pool->size(),
                IsaName(MatVecIsa()));
  struct sysinfo si {};
  if (sysinfo(&si) == 0) {
    info.total_memory = static_cast<uint64_t>(si.totalram) * si.mem_unit;
    info.free_memory = static_cast<uint64_t>(si.freeram + si.bufferram) * si.mem_unit;
  }
  info.caps = ZAYA_CAP_BF16_WEIGHTS | ZAYA_CAP_I8_WEIGHTS | ZAYA_CAP_I8_KV;
  const uint32_t n = std::min<uint32_t>(out->struct_size ? out->struct_size : sizeof(info), sizeof(info));
  std::memcpy(out, &info, n);
  out->struct_size = n;
  return ZAYA_STATUS_OK;
}

zaya_status BufferAlloc(zaya_backend* b, zaya_buffer_kind kind, uint64_t bytes, zaya_buffer** out) {
  if (b == nullptr || out == nullptr) return ZAYA_STATUS_INVALID_ARGUMENT;
  return Guard(b, [&] {
    // Rounding up to whole lines or pages must not wrap past 2^64 to a tiny allocation that
    // claims `bytes`; and no object is larger than PTRDIFF_MAX, so such a size is refused here
    // rather than handed to operator new (whose failure ASan reports as an error, not NULL).
    if (bytes > static_cast<uint64_t>(std::numeric_limits<std::ptrdiff_t>::max())) {
      b->last_error = "cannot allocate " + std::to_string(bytes) +
                      " bytes: more than the address space holds; check the requested size";
      return ZAYA_STATUS_OUT_OF_MEMORY;
    }
    auto buf = std::make_unique<zaya_buffer>();
    // Weights and KV blocks are streamed from DRAM every step: from 2 MiB on they go on huge
    // pages (large_pages.h), which the weights read faster from.
    buf->data =
        static_cast<std::byte*>(zaya::backend_common::AllocateStreamed(std::max<size_t>(bytes, 1)));
    if (buf->data == nullptr) {
      b->last_error = "cannot allocate " + std::to_string(bytes) + " bytes";
      return ZAYA_STATUS_OUT_OF_MEMORY;
    }
    buf->bytes = bytes;
    buf->kind = kind;
    b->allocated += bytes;
    *out = buf.release();
    return ZAYA_STATUS_OK;
  });
}

void BufferFree(zaya_backend* b, zaya_buffer* buf) {
  if (buf == nullptr) return;
  if (b != nullptr) b->allocated -= buf->bytes;
  zaya::backend_common::FreeStreamed(buf->data, std::max<size_t>(buf->bytes, 1));
  delete buf;
}

zaya_status BufferWrite(zaya_backend* b, zaya_buffer* buf, uint64_t offset, const void* src,
                        uint64_t bytes) {
  if (b == nullptr || buf == nullptr || (src == nullptr && bytes > 0)) return ZAYA_STATUS_INVALID_ARGUMENT;
  if (offset > buf->bytes || bytes > buf->bytes - offset) {
    b->last_error = "write of " + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                    " outside a buffer of " + std::to_string(buf->bytes);
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  uint64_t at = 0;
  if (const PreparedWeight* p = PreparedOverlap(buf, offset, bytes, &at)) {
    b->last_error = "write of " + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                    " overlaps " + PreparedName(*p, at) +
                    " (weight_prepare); a prepared weight is read-only, write it before preparing";
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  if (bytes > 0) std::memcpy(buf->data + offset, src, bytes);
  return ZAYA_STATUS_OK;
}

zaya_status WeightPrepare(zaya_backend* b, const zaya_tensor* weight, const zaya_tensor* scales) {
  if (b == nullptr || weight == nullptr) return ZAYA_STATUS_INVALID_ARGUMENT;
  return Guard(b, [&] {
    const zaya_tensor& w = *weight;
    backend_common::CheckBounds(w, "weight_prepare weight");
    if (w.buffer->kind != ZAYA_BUFFER_WEIGHTS) {
      Fail("weight_prepare: the weight is not in a weights buffer");
    }
    if (w.ndim != 2 && w.ndim != 3) {
      Fail("weight_prepare: the weight must be [rows, K] or [E, rows, K]");
    }
    const int64_t k = Cols(w);
    const uint64_t bytes = static_cast<uint64_t>(Elements(w)) * DTypeSize(w.dtype);
    uint64_t at = 0;
    if (const PreparedWeight* p = PreparedOverlap(w.buffer, w.offset, bytes, &at)) {
      if (at == w.offset && p->bytes == bytes && p->k == k && p->dtype == w.dtype &&
          !p->scales_of_weight) {
        return ZAYA_STATUS_OK;  // prepared before: nothing to do
      }
      Fail("weight_prepare: " + std::to_string(bytes) + " bytes at offset " +
           std::to_string(w.offset) + " overlap " + PreparedName(*p, at) +
           (p->scales_of_weight ? "" : " with another shape"));
    }
    const Weights checked =
        WeightsOf(w, scales != nullptr ? *scales : zaya_tensor{}, k, "weight_prepare weight");
    PreparedWeight p{bytes, k, w.dtype};
    // Rows per matrix: an [E, rows, K] stack is read expert by expert.
    if (checked.type == WType::kBF16 && Bf16TilesFit(w.shape[w.ndim - 2], k)) {
      auto* rows = reinterpret_cast<uint16_t*>(w.buffer->data + w.offset);
      const int64_t blocks = Elements(w) / k / kBf16TileRows;
      b->pool->ParallelFor(
          blocks, std::max<int64_t>(1, (int64_t{1} << 16) / k), [&](int64_t b0, int64_t b1, int) {
            PackBf16Tiles(rows + b0 * kBf16TileRows * k, (b1 - b0) * kBf16TileRows, k);
          });
      p.bf16_tiles = true;
    }
    // The int8 block layout interleaves the scales with the weight (kernels.h PackI8Blocks), in
    // place, so the scales must follow the weight in its buffer (as the model writes them); else
    // the weight keeps the group layout below, which leaves them alone. Scales that overlap a
    // prepared entry never get here: WeightsOf refused them above.
    const uint64_t sbytes =
        checked.type == WType::kI8 ? static_cast<uint64_t>(Elements(*scales)) * 4 : 0;
    if (checked.type == WType::kI8 && I8BlocksFit(w.shape[w.ndim - 2], k) &&
        scales->buffer == w.buffer && scales->offset == w.offset + bytes) {
      std::byte* region = w.buffer->data + w.offset;
      // The blocks outgrow the rows they come from (16.5 K bytes from 16 K): pack from a copy.
      // Transient: at most one matrix (the 8B shape's embedding, ~600 MB) at a time.
      std::vector<std::byte> from(region, region + bytes + sbytes);
      const auto* rows = reinterpret_cast<const int8_t*>(from.data());
      const auto* sc = reinterpret_cast<const float*>(from.data() + bytes);
      const int64_t blocks = Elements(w) / k / kI8TileRows;
      b->pool->ParallelFor(
          blocks, std::max<int64_t>(1, (int64_t{1} << 16) / k), [&](int64_t b0, int64_t b1, int) {
            PackI8Blocks(rows + b0 * kI8TileRows * k, sc + b0 * kI8TileRows * (k / kI8Group),
                         (b1 - b0) * kI8TileRows, k,
                         reinterpret_cast<uint8_t*>(region) + b0 * I8BlockBytes(k));
          });
      p.i8_blocks = true;
      p.scales_offset = scales->offset;
      PreparedWeight of_scales{sbytes, k / kI8Group, ZAYA_DTYPE_F32};
      of_scales.scales_of_weight = true;
      scales->buffer->prepared.emplace(scales->offset, of_scales);
    } else if (checked.type == WType::kI8 && I8TilesLayoutUsed() && k >= 256) {
      auto* rows = reinterpret_cast<int8_t*>(w.buffer->data + w.offset);
      const int64_t n = Elements(w) / k;
      b->pool->ParallelFor(
          n, std::max<int64_t>(1, (int64_t{1} << 20) / k),
          [&](int64_t r0, int64_t r1, int) { PackI8Tiles(rows + r0 * k, r1 - r0, k); });
      p.i8_tiles = true;
    }
    w.buffer->prepared.emplace(w.offset, p);
    return ZAYA_STATUS_OK;
  });
}

zaya_status BufferRead(zaya_backend* b, zaya_buffer* buf, uint64_t offset, void* dst,
                       uint64_t bytes) {
  if (b == nullptr || buf == nullptr || (dst == nullptr && bytes > 0)) return ZAYA_STATUS_INVALID_ARGUMENT;
  if (offset > buf->bytes || bytes > buf->bytes - offset) {
    b->last_error = "read of " + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                    " outside a buffer of " + std::to_string(buf->bytes);
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  if (bytes > 0) std::memcpy(dst, buf->data + offset, bytes);
  return ZAYA_STATUS_OK;
}

// ops[i, i + run) as SharedXRun found them: all checked first, then one parallel region; one by
// one instead if an output overlaps the shared x. *at is the op an error belongs to.
void ExecuteSharedX(zaya_backend* b, const zaya_op* ops, uint64_t i, uint64_t run, uint64_t* at) {
  std::vector<MatMulArgs> args;
  args.reserve(run);
  for (*at = i; *at < i + run; ++*at) args.push_back(PrepareMatMul(ops[*at]));
  *at = i;
  std::vector<MatVecJob> jobs;
  bool overlap = false;
  const auto* x0 = reinterpret_cast<const std::byte*>(args[0].x);
  const auto* x1 = x0 + args[0].t * args[0].k * 4;
  for (const MatMulArgs& a : args) {
    jobs.push_back(a.job);
    const auto* y0 = reinterpret_cast<const std::byte*>(a.job.y);
    overlap = overlap || (y0 < x1 && y0 + a.t * a.job.n * 4 > x0);
  }
  if (overlap) {
    for (; *at < i + run; ++*at) Execute(b, ops[*at]);
    return;
  }
  MatVecShared(*b->pool, args[0].x, args[0].t, args[0].k, jobs.data(),
               static_cast<int64_t>(jobs.size()));
}

zaya_status ExecuteOps(zaya_backend* b, const zaya_op* ops, uint64_t n) {
  if (b == nullptr || (ops == nullptr && n > 0)) return ZAYA_STATUS_INVALID_ARGUMENT;
  for (uint64_t i = 0; i < n;) {
    const uint64_t run = SharedXRun(ops, i, n);
    uint64_t at = i;  // the op an error is reported against
    zaya_status s = Guard(b, [&] {
      const double t0 = b->profile.enabled() ? backend_common::OpProfile::Now() : 0.0;
      if (run == 1) {
        Execute(b, ops[i]);
      } else {
        ExecuteSharedX(b, ops, i, run, &at);
      }
      if (b->profile.enabled()) {
        b->profile.Add(ops[i].type, backend_common::OpProfile::Now() - t0);
      }
      return ZAYA_STATUS_OK;
    });
    if (s != ZAYA_STATUS_OK) {
      b->last_error = "op " + std::to_string(at) + " (type " + std::to_string(ops[at].type) +
                      "): " + b->last_error;
      return s;
    }
    i += run;
  }
  return ZAYA_STATUS_OK;
}

const zaya_backend_api kApi = {
    ZAYA_BACKEND_ABI_MAJOR, ZAYA_BACKEND_ABI_MINOR, sizeof(zaya_backend_api), "cpu", ZAYA_VERSION,
    &Create, &Destroy, &LastError, &DeviceInfo, &BufferAlloc, &BufferFree, &BufferWrite,
    &BufferRead, &ExecuteOps, &WeightPrepare,
};

}  // namespace
}  // namespace zaya::cpu

extern "C" __attribute__((visibility("default"))) const zaya_backend_api* zaya_backend_entry_v1(void) {
  return &zaya::cpu::kApi;
}

extern "C" __attribute__((visibility("default"))) int zaya_backend_score(const char** reason) {
  // The kernels have a baseline x86-64 path, so the CPU backend runs anywhere it loads.
  if (reason != nullptr) *reason = "";
  return 1;
}
