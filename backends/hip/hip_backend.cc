// libzaya-backend-hip.so: the GPU implementation of the backend ABI (zaya/backend.h) on HIP (AMD),
// CUDA (NVIDIA, through gpu_port.h) or the host emulator. This file is host code: it validates each
// op against its operands exactly where the CPU backend does (same conditions, same messages), then
// enqueues the kernels of kernels.hip on the instance's stream, and synchronizes once at the end of
// execute(). Every entry point catches everything: no exception crosses the ABI, every runtime
// call is checked, failures become a status plus last_error text.
//
// Index tensors the host wrote (ids, seq_of_token, positions, slots, block tables, gather rows) are
// checked on the host before the launch: ZAYA_BUFFER_HOST buffers are pinned, device-mapped host
// memory, so this costs no copy. The one index produced on the device, the MoE expert id, is
// checked by the kernel, which zeroes the token's output and raises an error flag that execute()
// reports after its final synchronize (the ops after it have run by then).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/op_checks.h"
#include "../common/op_profile.h"
#include "gpu_port.h"
#include "kernels.h"
#include "step_graphs.h"
#include "zaya/backend.h"

#ifndef ZAYA_VERSION
#define ZAYA_VERSION "0"
#endif
#ifndef ZAYA_HIP_ARCH_LIST
#define ZAYA_HIP_ARCH_LIST ""
#endif

#if defined(ZAYA_GPU_EMULATE)
#define ZAYA_BACKEND_NAME "hip-emulator"
#else
#define ZAYA_BACKEND_NAME "hip"
#endif

struct zaya_buffer {
  std::byte* device = nullptr;  // what kernels use (the device view of pinned memory for HOST)
  std::byte* host = nullptr;    // ZAYA_BUFFER_HOST only: the host view of the same memory
  // ZAYA_BUFFER_HOST only: a device copy of the ranges kernels read as index tables during step
  // `copied_step` (DevIndex). Kernels reading mapped host memory wait a PCIe round trip (~1-2 us)
  // per dependent read, and attention chained three of them per position.
  std::byte* twin = nullptr;
  uint64_t copied_step = 0;
  std::vector<std::pair<uint64_t, uint64_t>> copied;  // [offset, end) ranges current in `twin`
  uint64_t bytes = 0;
  zaya_buffer_kind kind = ZAYA_BUFFER_SCRATCH;
};

namespace zaya::hip {
namespace {

using backend_common::CheckBounds;
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

void Check(hipError_t e, const char* what) {
  if (e == hipSuccess) return;
  throw OpError(e == hipErrorOutOfMemory ? ZAYA_STATUS_OUT_OF_MEMORY : ZAYA_STATUS_DEVICE_ERROR,
                std::string(what) + ": " + hipGetErrorString(e));
}

// Per-execute bump allocator over one allocation that grows (after a synchronize) when a step needs
// more. Pointers it hands out stay valid until the next Reset or growth.
struct Arena {
  bool pinned = false;  // pinned mapped host memory (host tables for kernels) or device memory
  std::byte* host = nullptr;
  std::byte* device = nullptr;
  uint64_t capacity = 0;
  uint64_t used = 0;
};

}  // namespace
}  // namespace zaya::hip

struct zaya_backend {
  int device = 0;
  hipStream_t stream = nullptr;
  std::string last_error;
  zaya_log_fn log = nullptr;
  void* log_user = nullptr;
  uint64_t allocated = 0;
  zaya::hip::Arena workspace;     // device scratch of the current step (CCA, MoE, copies)
  zaya::hip::Arena tables{true};  // host-built index tables the kernels read (CCA runs)
  uint64_t step = 0;              // ExecuteOps calls so far (dates the HOST buffers' device copies)
  int* flag_host = nullptr;       // error flag kernels raise (pinned, mapped)
  int* flag_device = nullptr;
  bool host_dirty = false;  // an op of this step writes a HOST buffer: sync before reading
  // ZAYA_HIP_PROFILE=1: each op is followed by a stream sync and its wall time is added to its
  // type's total; the table goes to stderr when the backend is destroyed. A diagnostic for
  // finding where a step's time goes (it serialises the host and the device, so totals are
  // upper bounds), off by default.
  zaya::backend_common::OpProfile profile{"ZAYA_HIP_PROFILE"};
  // Each step's launches are recorded, then replayed as a graph when they repeat an earlier
  // step's (step_graphs.h). ZAYA_HIP_GRAPHS=0, or ZAYA_HIP_PROFILE, launches each op as it comes.
  bool use_graphs = true;
  zaya::gpu::Recorder recorder;
  zaya::hip::StepGraphs graphs;
  // Where recorded steps' wall time went (logged with the graph counts at destruction): the host
  // validating and recording the ops, enqueuing them (a graph launch or each call), and waiting.
  // A step that had to wait for the device part-way (Sync while recording: an arena grew, or an
  // index table was read from device memory) ran its first kernels inside "recording"; such
  // steps are counted apart, or the first steps of a run (where the arenas grow) would pass
  // device time off as host time in the per-step averages.
  double record_s = 0, enqueue_s = 0, wait_s = 0;
  uint64_t whole_steps = 0;
  bool waited_mid_step = false;
  uint64_t waited_steps = 0;
  double waited_s = 0;
};

namespace zaya::hip {
namespace {

// Waits for everything enqueued so far; launches what a recording step holds first, so that a
// wait in the middle of a step (a growing arena, a host read of an index table) sees it done.
void Sync(zaya_backend* b) {
  if (gpu::ActiveRecorder() == &b->recorder && !b->recorder.empty()) {
    b->waited_mid_step = true;
    const hipError_t e =
        StepGraphs::LaunchEach({b->recorder.begin(), b->recorder.end()}, b->stream);
    b->recorder.Clear();
    Check(e, "kernel launch");
  }
  Check(hipStreamSynchronize(b->stream), "synchronizing the stream");
}

void FreeArena(Arena& a) {
  if (a.pinned) {
    if (a.host != nullptr) static_cast<void>(hipHostFree(a.host));
  } else if (a.device != nullptr) {
    static_cast<void>(hipFree(a.device));
  }
  a = Arena{a.pinned};
}

std::byte* Take(zaya_backend* b, Arena& a, uint64_t bytes, std::byte** host_view = nullptr) {
  bytes = (std::max<uint64_t>(bytes, 1) + 255) / 256 * 256;
  if (a.used + bytes > a.capacity) {
    Sync(b);  // everything that used the old allocation has finished
    const uint64_t want = std::max<uint64_t>(a.capacity * 2, a.used + bytes);
    FreeArena(a);
    if (a.pinned) {
      void* h = nullptr;
      Check(hipHostMalloc(&h, want, hipHostMallocMapped), "allocating pinned step tables");
      a.host = static_cast<std::byte*>(h);
      void* d = nullptr;
      Check(hipHostGetDevicePointer(&d, h, 0), "mapping pinned step tables");
      a.device = static_cast<std::byte*>(d);
    } else {
      void* d = nullptr;
      Check(hipMalloc(&d, want), "allocating step workspace");
      a.device = static_cast<std::byte*>(d);
    }
    a.capacity = want;
    a.used = 0;
  }
  std::byte* d = a.device + a.used;
  if (host_view != nullptr) *host_view = a.host + a.used;
  a.used += bytes;
  return d;
}

// Checked device pointer to a tensor's data, which must be of the dtype T stands for (std::byte:
// any, for operands whose dtype the op dispatches on); `what` names the operand in errors.
template <typename T>
T* Dev(zaya_backend* b, const zaya_tensor& t, const char* what) {
  CheckBounds(t, what);
  if constexpr (!std::is_same_v<T, std::byte>) backend_common::ExpectElementsOf<T>(t, what);
  if (t.buffer->kind == ZAYA_BUFFER_HOST) {
    b->host_dirty = true;  // conservatively: may be written
    t.buffer->copied.clear();
  }
  return reinterpret_cast<T*>(t.buffer->device + t.offset);
}

template <typename T>
const T* DevIn(const zaya_tensor& t, const char* what) {
  CheckBounds(t, what);
  if constexpr (!std::is_same_v<T, std::byte>) backend_common::ExpectElementsOf<T>(t, what);
  return reinterpret_cast<const T*>(t.buffer->device + t.offset);
}

// Checked device pointer to an index tensor the kernels read (validated on the host first): a
// HOST tensor through its buffer's device twin, copied there at its first use in the step (the
// copy is ordered on the stream after any earlier op that wrote the buffer); others directly.
template <typename T>
const T* DevIndex(zaya_backend* b, const zaya_tensor& t, const char* what) {
  const T* direct = DevIn<T>(t, what);
  zaya_buffer* buf = t.buffer;
  if (buf->kind != ZAYA_BUFFER_HOST || buf->twin == nullptr) return direct;
  if (buf->copied_step != b->step) {
    buf->copied.clear();
    buf->copied_step = b->step;
  }
  const uint64_t begin = t.offset;
  const uint64_t end = begin + static_cast<uint64_t>(Elements(t)) * DTypeSize(t.dtype);
  bool current = false;
  for (const auto& [from, to] : buf->copied) current = current || (from <= begin && end <= to);
  if (!current && end > begin) {
    Check(gpu::CopyAsync(buf->twin + begin, buf->device + begin, end - begin, b->stream),
          "copying an index table to the device");
    buf->copied.emplace_back(begin, end);
  }
  return reinterpret_cast<const T*>(buf->twin + begin);
}

// A host-readable copy of an (index) tensor for validation: HOST buffers directly, other buffers
// through a synchronous copy into `storage`.
template <typename T>
const T* HostIn(zaya_backend* b, const zaya_tensor& t, const char* what,
                std::vector<std::byte>& storage) {
  CheckBounds(t, what);
  if (t.dtype != ZAYA_DTYPE_I32) Fail(std::string(what) + " must be i32");
  const uint64_t n = static_cast<uint64_t>(Elements(t)) * DTypeSize(t.dtype);
  if (t.buffer->host != nullptr) {
    if (b->host_dirty) {
      Sync(b);
      b->host_dirty = false;
    }
    return reinterpret_cast<const T*>(t.buffer->host + t.offset);
  }
  Sync(b);
  storage.resize(n);
  Check(hipMemcpy(storage.data(), t.buffer->device + t.offset, n, hipMemcpyDeviceToHost),
        "reading an index tensor");
  return reinterpret_cast<const T*>(storage.data());
}

// Small per-channel vectors (norm weights, biases, scales) of f32 or bf16; absent stays absent.
DevVec VecOf(const zaya_tensor& t, int64_t n, const char* what) {
  DevVec v;
  if (!Present(t)) return v;
  if (Elements(t) != n) {
    Fail(std::string(what) + " has " + std::to_string(Elements(t)) + " elements, expected " +
         std::to_string(n));
  }
  if (t.dtype != ZAYA_DTYPE_F32 && t.dtype != ZAYA_DTYPE_BF16) {
    Fail(std::string(what) + " must be f32 or bf16");
  }
  v.data = DevIn<std::byte>(t, what);
  v.dtype = t.dtype == ZAYA_DTYPE_BF16 ? kBF16 : kF32;
  return v;
}

DevWeights WeightsOf(const zaya_tensor& w, const zaya_tensor& scales, int64_t k, const char* what) {
  DevWeights out;
  switch (w.dtype) {
    case ZAYA_DTYPE_F32:
      out.dtype = kF32;
      break;
    case ZAYA_DTYPE_BF16:
      out.dtype = kBF16;
      break;
    case ZAYA_DTYPE_I8: {
      out.dtype = kI8;
      // Rows are counted by K and scales come per ZAYA_I8_BLOCK of K (as the CPU backend, which
      // divides by K).
      if (k <= 0)
        Fail(std::string(what) + ": int8 weights need K > 0, not K = " + std::to_string(k));
      const int64_t rows = Elements(w) / k;
      const int64_t want = rows * zaya_i8_scales(k);
      if (!Present(scales) || Elements(scales) != want) {
        Fail(std::string(what) + ": int8 weights [" + std::to_string(rows) + ", " +
             std::to_string(k) + "] need " + std::to_string(want) + " f32 scales, one per " +
             std::to_string(ZAYA_I8_BLOCK) + " values of a row (ABI " +
             std::to_string(ZAYA_BACKEND_ABI_MAJOR) + "), not " +
             std::to_string(Present(scales) ? Elements(scales) : 0));
      }
      ExpectDType(scales, ZAYA_DTYPE_F32, "int8 scales");
      out.scales = DevIn<float>(scales, "int8 scales");
      break;
    }
    default:
      throw OpError(ZAYA_STATUS_UNSUPPORTED, std::string(what) + ": unsupported weight dtype");
  }
  out.data = DevIn<std::byte>(w, what);
  return out;
}

void CheckGrid(int64_t blocks, const char* what) {
  if (blocks > 65535) {
    throw OpError(ZAYA_STATUS_UNSUPPORTED,
                  std::string(what) + " needs " + std::to_string(blocks) +
                      " row blocks, more than one launch dimension holds (65535)");
  }
}

void OpEmbed(zaya_backend* b, const zaya_op& op) {
  const int64_t t = Elements(op.src[0]);
  ExpectDType(op.src[0], ZAYA_DTYPE_I32, "embed ids");
  std::vector<std::byte> storage;
  const int32_t* ids = HostIn<int32_t>(b, op.src[0], "embed ids", storage);
  if (op.src[1].ndim != 2) {
    Fail("embed: the table must be [V, H], not " + backend_common::ShapeText(op.src[1]));
  }
  const int64_t v = Dim(op.src[1], 0), h = Cols(op.src[1]);
  const DevVec bias = VecOf(op.src[2], h, "embed bias");
  const DevVec scale = VecOf(op.src[3], h, "embed scale");
  if (Elements(op.dst[0]) != t * h) Fail("embed output must be [T,H]");
  float* out = Dev<float>(b, op.dst[0], "embed output");
  const DevWeights table = WeightsOf(op.src[1], op.src[4], h, "embedding table");
  for (int64_t i = 0; i < t; ++i) {
    if (ids[i] < 0 || ids[i] >= v) {
      Fail("token id " + std::to_string(ids[i]) + " outside the vocabulary of " +
           std::to_string(v));
    }
  }
  if (t == 0) return;
  LaunchEmbed(b->stream, DevIndex<int32_t>(b, op.src[0], "embed ids"), t, table, h, bias, scale,
              out);
}

struct RmsNormPlan {
  const float* x;
  DevVec w;
  int64_t t, n;
  float* y;
};

RmsNormPlan PrepareRmsNorm(zaya_backend* b, const zaya_op& op) {
  RmsNormPlan p{};
  p.n = Cols(op.src[0]);
  p.t = Rows(op.src[0]);
  if (Elements(op.dst[0]) != p.t * p.n) Fail("rmsnorm output shape differs from input");
  p.w = VecOf(op.src[1], p.n, "rmsnorm weight");
  p.x = DevIn<float>(op.src[0], "rmsnorm input");
  p.y = Dev<float>(b, op.dst[0], "rmsnorm output");
  return p;
}

void OpRmsNorm(zaya_backend* b, const zaya_op& op) {
  const RmsNormPlan p = PrepareRmsNorm(b, op);
  if (p.t == 0 || p.n == 0) return;
  LaunchRmsNorm(b->stream, p.x, p.w, p.t, p.n, op.f[0], p.y);
}

struct MatMulPlan {
  const float* x;
  int64_t t, k;
  MatVecJob job;
};

MatMulPlan PrepareMatMul(zaya_backend* b, const zaya_op& op) {
  MatMulPlan p{};
  const backend_common::MatMulSizes sizes = backend_common::CheckMatMulSizes(op);
  p.t = sizes.t;
  p.k = sizes.k;
  p.job.n = sizes.n;
  p.job.bias = VecOf(op.src[2], p.job.n, "matmul bias");
  if (op.i[0] < 0 || op.i[0] > 2) Fail("matmul: unknown activation");
  p.job.act = static_cast<int32_t>(op.i[0]);
  p.job.w = WeightsOf(op.src[1], op.src[3], p.k, "matmul W");
  p.x = DevIn<float>(op.src[0], "matmul x");
  p.job.y = Dev<float>(b, op.dst[0], "matmul output");
  return p;
}

void OpMatMul(zaya_backend* b, const zaya_op& op) {
  const MatMulPlan p = PrepareMatMul(b, op);
  if (p.t == 0 || p.job.n == 0) return;
  LaunchMatMuls(b->stream, p.x, p.t, p.k, &p.job, 1);
}

void OpMulAdd(zaya_backend* b, const zaya_op& op) {
  const int64_t n = Cols(op.src[0]), t = Rows(op.src[0]);
  const DevVec s = VecOf(op.src[2], n, "mul_add scale");
  if (Elements(op.src[1]) != t * n || Elements(op.dst[0]) != t * n) Fail("mul_add shapes differ");
  const float* a = DevIn<float>(op.src[0], "mul_add a");
  const float* c = DevIn<float>(op.src[1], "mul_add b");
  float* out = Dev<float>(b, op.dst[0], "mul_add output");
  if (t * n == 0) return;
  LaunchMulAdd(b->stream, a, c, s, t, n, out);
}

struct MergePlan {
  const float* x;
  DevVec bh, sh, br, sr;
  int64_t t, n;
  float* h;
};

MergePlan PrepareMerge(zaya_backend* b, const zaya_op& op) {
  MergePlan p{};
  p.n = Cols(op.src[0]);
  p.t = Rows(op.src[0]);
  if (Elements(op.dst[0]) != p.t * p.n) Fail("merge: residual and branch shapes differ");
  p.bh = VecOf(op.src[1], p.n, "merge branch bias");
  p.sh = VecOf(op.src[2], p.n, "merge branch scale");
  p.br = VecOf(op.src[3], p.n, "merge residual bias");
  p.sr = VecOf(op.src[4], p.n, "merge residual scale");
  p.x = DevIn<float>(op.src[0], "merge branch");
  p.h = Dev<float>(b, op.dst[0], "merge residual");
  return p;
}

void OpMerge(zaya_backend* b, const zaya_op& op) {
  const MergePlan p = PrepareMerge(b, op);
  if (p.t * p.n == 0) return;
  LaunchMerge(b->stream, p.x, p.bh, p.sh, p.br, p.sr, p.t, p.n, p.h);
}

// Whether na and nb 4-byte elements at a and b overlap.
bool Overlap(const void* a, int64_t na, const void* b, int64_t nb) {
  const auto* pa = static_cast<const std::byte*>(a);
  const auto* pb = static_cast<const std::byte*>(b);
  return pa < pb + nb * 4 && pb < pa + na * 4;
}

bool SameTensor(const zaya_tensor& a, const zaya_tensor& b) {
  if (a.buffer != b.buffer || a.offset != b.offset || a.dtype != b.dtype || a.ndim != b.ndim) {
    return false;
  }
  for (int32_t d = 0; d < a.ndim && d < 4; ++d) {
    if (a.shape[d] != b.shape[d]) return false;
  }
  return true;
}

// Runs ops[i] together with the ops after it that one launch can do with it: MATMULs of up to
// kMatVecMaxTokens tokens reading the same x (LaunchMatMuls), or a MERGE and the RMSNORM of its
// result (LaunchMergeNorm). Returns how many ops it ran; 0 when ops[i] has no such partner, and
// the caller runs it alone. A partner that fails validation is left out, so that it reports its
// own error when its turn comes.
uint64_t ExecuteFused(zaya_backend* b, const zaya_op* ops, uint64_t i, uint64_t n) {
  const zaya_op& op = ops[i];
  if (op.type == ZAYA_OP_MATMUL && i + 1 < n && ops[i + 1].type == ZAYA_OP_MATMUL &&
      SameTensor(ops[i + 1].src[0], op.src[0])) {
    const MatMulPlan first = PrepareMatMul(b, op);
    if (first.t == 0 || first.t > kMatVecMaxTokens) return 0;
    if (first.job.n == 0 ||
        Overlap(first.job.y, first.t * first.job.n, first.x, first.t * first.k)) {
      return 0;
    }
    MatVecJob jobs[kMaxMatVecJobs] = {first.job};
    int count = 1;
    for (uint64_t j = i + 1; j < n && count < kMaxMatVecJobs; ++j) {
      if (ops[j].type != ZAYA_OP_MATMUL || !SameTensor(ops[j].src[0], op.src[0])) break;
      MatMulPlan p;
      try {
        p = PrepareMatMul(b, ops[j]);
      } catch (const OpError&) {
        break;
      }
      if (p.job.n == 0 || Overlap(p.job.y, p.t * p.job.n, first.x, first.t * first.k)) break;
      jobs[count++] = p.job;
    }
    if (count < 2) return 0;
    LaunchMatMuls(b->stream, first.x, first.t, first.k, jobs, count);
    return static_cast<uint64_t>(count);
  }
  if (op.type == ZAYA_OP_MERGE && i + 1 < n && ops[i + 1].type == ZAYA_OP_RMSNORM &&
      SameTensor(ops[i + 1].src[0], op.dst[0])) {
    const MergePlan m = PrepareMerge(b, op);
    RmsNormPlan r;
    try {
      r = PrepareRmsNorm(b, ops[i + 1]);
    } catch (const OpError&) {
      return 0;
    }
    const int64_t e = m.t * m.n;
    if (e == 0 || Overlap(r.y, e, m.x, e) || (r.y != m.h && Overlap(r.y, e, m.h, e))) return 0;
    LaunchMergeNorm(b->stream, m.x, m.bh, m.sh, m.br, m.sr, m.t, m.n, m.h, r.w, ops[i + 1].f[0],
                    r.y);
    return 2;
  }
  return 0;
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
  if (hd > kMaxHeadDim) {
    throw OpError(ZAYA_STATUS_UNSUPPORTED, "cca: head_dim " + std::to_string(hd) + " above the " +
                                               std::to_string(kMaxHeadDim) +
                                               " this backend's kernel supports");
  }
  const int64_t qd = nh * hd, kd = nkv * hd, c = qd + kd, vh = kd / 2, t = Rows(op.src[0]);
  if (!ElementsAre(op.src[0], {t, qd}) || !ElementsAre(op.src[1], {t, kd})) {
    Fail("cca: q0 must be [T,nh*hd] and k0 [T,nkv*hd]");
  }
  CcaArgs a{};
  a.q0 = DevIn<float>(op.src[0], "cca q0");
  a.k0 = DevIn<float>(op.src[1], "cca k0");
  a.vcur = DevIn<float>(op.src[2], "cca vcur");
  a.vdel = DevIn<float>(op.src[3], "cca vdel");
  if (!ElementsAre(op.src[2], {t, vh}) || !ElementsAre(op.src[3], {t, vh})) {
    Fail("cca: vcur and vdel must be [T, nkv*hd/2]");
  }
  if (!ElementsAre(op.src[4], {c, 2}) || !ElementsAre(op.src[6], {c, hd, 2})) {
    Fail("cca: conv weight shapes must be [C,1,2] and [C,hd,2]");
  }
  a.dw = VecOf(op.src[4], c * 2, "cca depthwise weight");
  a.db = VecOf(op.src[5], c, "cca depthwise bias");
  a.gw = VecOf(op.src[6], c * hd * 2, "cca grouped weight");
  a.gb = VecOf(op.src[7], c, "cca grouped bias");
  a.temp = VecOf(op.src[8], nkv, "cca temp");
  a.q = Dev<float>(b, op.dst[0], "cca q");
  a.k = Dev<float>(b, op.dst[1], "cca k");
  a.v = Dev<float>(b, op.dst[2], "cca v");
  if (!ElementsAre(op.dst[0], {t, qd}) || !ElementsAre(op.dst[1], {t, kd}) ||
      !ElementsAre(op.dst[2], {t, kd})) {
    Fail("cca: output shapes must be [T,nh*hd], [T,nkv*hd], [T,nkv*hd]");
  }
  a.conv_state = Dev<float>(b, op.dst[3], "cca conv state");
  a.v_state = Dev<float>(b, op.dst[4], "cca value state");
  const int64_t slots = Dim(op.dst[3], 0);
  if (Elements(op.dst[3]) != slots * 2 * c || Elements(op.dst[4]) != slots * vh) {
    Fail("cca: state shapes must be [slots,2,C] and [slots,nkv*hd/2]");
  }
  std::vector<std::byte> s0, s1;
  const int32_t* seq_of_token = HostIn<int32_t>(b, op.aux[0], "cca seq_of_token", s0);
  const int32_t* slot_of_seq = HostIn<int32_t>(b, op.aux[1], "cca slot_of_seq", s1);
  ExpectDType(op.aux[2], ZAYA_DTYPE_I32, "cca position");
  a.position = DevIndex<int32_t>(b, op.aux[2], "cca position");
  if (Elements(op.aux[0]) < t || Elements(op.aux[2]) < t) {
    Fail("cca: seq_of_token and position need one entry per token");
  }
  const int64_t n_seq = Elements(op.aux[1]);
  a.eps = op.f[1] > 0 ? op.f[1] : std::numeric_limits<float>::epsilon();
  a.theta = op.f[0];
  a.nh = nh;
  a.nkv = nkv;
  a.hd = hd;
  a.rope_dims = rope_dims;

  // Runs go to separate blocks in parallel, so two runs must not share a state slot (checked).
  const backend_common::CcaRuns runs =
      backend_common::CcaTokenRuns(seq_of_token, t, slot_of_seq, n_seq, slots);
  const std::vector<int32_t>& run_begin = runs.begin;
  const std::vector<int32_t>& run_slot = runs.slot;
  a.runs = static_cast<int64_t>(run_slot.size());
  if (a.runs == 0) return;
  std::byte* host = nullptr;
  const uint64_t table_bytes = (run_begin.size() + run_slot.size()) * sizeof(int32_t);
  std::byte* dev = Take(b, b->tables, table_bytes, &host);
  std::memcpy(host, run_begin.data(), run_begin.size() * sizeof(int32_t));
  std::memcpy(host + run_begin.size() * sizeof(int32_t), run_slot.data(),
              run_slot.size() * sizeof(int32_t));
  // Kernels read the runs from a device copy (zaya_buffer::twin says why), carved from the same
  // workspace allocation as the conv scratch: a second Take could move the first.
  const uint64_t work_bytes = static_cast<uint64_t>(3 * t * c) * 4;
  std::byte* ws = Take(b, b->workspace, work_bytes + table_bytes);
  std::byte* copy = ws + work_bytes;
  Check(gpu::CopyAsync(copy, dev, table_bytes, b->stream), "copying CCA runs");
  a.run_begin = reinterpret_cast<const int32_t*>(copy);
  a.run_slot = reinterpret_cast<const int32_t*>(copy + run_begin.size() * sizeof(int32_t));
  a.tokens = t;
  a.work = reinterpret_cast<float*>(ws);
  LaunchCca(b->stream, a);
}

void OpAttention(zaya_backend* b, const zaya_op& op) {
  const int64_t nh = op.i[0], nkv = op.i[1], hd = op.i[2], bt = op.i[3];
  if (nh <= 0 || nkv <= 0 || hd <= 0 || bt <= 0 || nh % nkv != 0) Fail("attention: bad heads");
  if (nh > kMaxHeadParam || hd > kMaxHeadParam || bt > kMaxHeadParam) {
    Fail("attention: head counts, head_dim and block_tokens must be at most " +
         std::to_string(kMaxHeadParam));
  }
  if (hd > kMaxHeadDim) {
    throw OpError(ZAYA_STATUS_UNSUPPORTED, "attention: head_dim " + std::to_string(hd) +
                                               " above the " + std::to_string(kMaxHeadDim) +
                                               " this backend's kernel supports");
  }
  const int64_t t = Rows(op.src[0]);
  AttentionArgs a{};
  a.q = DevIn<float>(op.src[0], "attention q");
  a.k = DevIn<float>(op.src[1], "attention k");
  a.v = DevIn<float>(op.src[2], "attention v");
  if (!ElementsAre(op.src[0], {t, nh, hd}) || !ElementsAre(op.src[1], {t, nkv, hd}) ||
      !ElementsAre(op.src[2], {t, nkv, hd})) {
    Fail("attention: q/k/v shapes");
  }
  if (!ElementsAre(op.dst[0], {t, nh, hd})) {
    Fail("attention: output must be [T, nh*hd] ([" + std::to_string(t) + ", " +
         std::to_string(nh * hd) + "] values), not " + std::to_string(Elements(op.dst[0])));
  }
  a.out = Dev<float>(b, op.dst[0], "attention output");
  const zaya_tensor& kc = op.dst[1];
  const zaya_tensor& vc = op.dst[2];
  if (kc.dtype != vc.dtype ||
      (kc.dtype != ZAYA_DTYPE_F32 && kc.dtype != ZAYA_DTYPE_BF16 && kc.dtype != ZAYA_DTYPE_I8)) {
    Fail("attention: caches must both be f32, bf16 or i8");
  }
  a.cache = kc.dtype == ZAYA_DTYPE_BF16 ? kCacheBf16
            : kc.dtype == ZAYA_DTYPE_I8 ? kCacheI8
                                        : kCacheF32;
  const int64_t blocks = Dim(kc, 0);
  if (!ElementsAre(kc, {blocks, bt, nkv, hd}) || Elements(vc) != Elements(kc)) {
    Fail("attention: cache shape must be [blocks, block_tokens, nkv, hd]");
  }
  a.k_scale = a.v_scale = nullptr;
  if (a.cache == kCacheI8) {
    backend_common::CheckKvScales(op, blocks, bt, nkv);
    a.k_scale = Dev<float>(b, op.dst[3], "K cache scales");
    a.v_scale = Dev<float>(b, op.dst[4], "V cache scales");
  }
  a.k_cache = Dev<std::byte>(b, kc, "K cache");
  a.v_cache = Dev<std::byte>(b, vc, "V cache");
  std::vector<std::byte> s0, s1, s2;
  const int32_t* seq_of_token = HostIn<int32_t>(b, op.aux[0], "attention seq_of_token", s0);
  const int32_t* table = HostIn<int32_t>(b, op.aux[1], "attention block table", s1);
  const int32_t* position = HostIn<int32_t>(b, op.aux[2], "attention position", s2);
  if (Elements(op.aux[0]) < t || Elements(op.aux[2]) < t) {
    Fail("attention: seq_of_token and position need one entry per token");
  }
  if (op.aux[1].ndim != 2) {
    Fail("attention: block table must be [S, max_blocks], not " +
         backend_common::ShapeText(op.aux[1]));
  }
  const int64_t n_seq = Dim(op.aux[1], 0), max_blocks = Cols(op.aux[1]);
  // Every block a token reads or writes must exist: positions 0..position[t] of its sequence.
  backend_common::CheckAttentionBlocks(seq_of_token, position, t, table, n_seq, max_blocks, bt,
                                       blocks);
  a.seq_of_token = DevIndex<int32_t>(b, op.aux[0], "attention seq_of_token");
  a.block_table = DevIndex<int32_t>(b, op.aux[1], "attention block table");
  a.position = DevIndex<int32_t>(b, op.aux[2], "attention position");
  a.t = t;
  a.nh = nh;
  a.nkv = nkv;
  a.hd = hd;
  a.bt = bt;
  a.max_blocks = max_blocks;
  a.scale = op.f[0];
  if (t == 0) return;
  // Enough chunks for the longest history of the step (positions are validated above).
  int64_t longest = 1;
  for (int64_t i = 0; i < t; ++i) longest = std::max<int64_t>(longest, position[i] + 1);
  a.chunks = (longest + kAttnChunk - 1) / kAttnChunk;
  if (a.chunks > 1) {
    a.partial = reinterpret_cast<float*>(
        Take(b, b->workspace, static_cast<uint64_t>(t * nh * a.chunks * (hd + 2)) * sizeof(float)));
  }
  LaunchAttention(b->stream, a);
}

void OpRouterSelect(zaya_backend* b, const zaya_op& op) {
  const int64_t e1 = Cols(op.src[0]), t = Rows(op.src[0]);
  const float* logits = DevIn<float>(op.src[0], "router logits");
  const DevVec bias = VecOf(op.src[1], e1, "balancing biases");
  int32_t* expert = Dev<int32_t>(b, op.dst[0], "router expert");
  float* weight = Dev<float>(b, op.dst[1], "router weight");
  if (Elements(op.dst[0]) != t || Elements(op.dst[1]) != t) Fail("router outputs must be [T]");
  if (t == 0 || e1 == 0) return;
  LaunchRouterSelect(b->stream, logits, bias, t, e1, expert, weight);
}

void OpMoe(zaya_backend* b, const zaya_op& op, uint64_t index) {
  const int64_t h = Cols(op.src[0]), t = Rows(op.src[0]);
  const int64_t e = op.i[0];
  const zaya_tensor& gu = op.src[1];
  const zaya_tensor& dn = op.src[2];
  if (gu.ndim != 3 || dn.ndim != 3 || gu.shape[0] != e || dn.shape[0] != e || gu.shape[2] != h ||
      dn.shape[1] != h || gu.shape[1] != 2 * dn.shape[2]) {
    Fail("moe: weights must be gate_up [E,2I,H] and down [E,H,I]");
  }
  MoeArgs a{};
  a.inter = dn.shape[2];
  a.x = DevIn<float>(op.src[0], "moe x");
  ExpectDType(op.src[3], ZAYA_DTYPE_I32, "moe expert");
  ExpectDType(op.src[4], ZAYA_DTYPE_F32, "moe weight");
  a.expert = DevIn<int32_t>(op.src[3], "moe expert");
  a.weight = DevIn<float>(op.src[4], "moe weight");
  if (Elements(op.src[3]) < t || Elements(op.src[4]) < t)
    Fail("moe: expert and weight must be [T]");
  a.out = Dev<float>(b, op.dst[0], "moe output");
  if (Elements(op.dst[0]) != t * h) Fail("moe output must be [T,H]");
  a.gate_up = WeightsOf(gu, op.src[5], h, "moe gate_up");
  a.down = WeightsOf(dn, op.src[6], a.inter, "moe down");
  a.t = t;
  a.h = h;
  a.e = e;
  a.error_flag = b->flag_device;
  a.error_code = static_cast<int>(std::min<uint64_t>(index, 1u << 30)) + 1;
  if (t == 0 || h == 0) return;
  CheckGrid((2 * a.inter + 3) / 4, "moe gate_up");
  CheckGrid((h + 3) / 4, "moe down");
  a.hidden = reinterpret_cast<float*>(
      Take(b, b->workspace, static_cast<uint64_t>(t * 2 * a.inter) * sizeof(float)));
  LaunchMoe(b->stream, a);
}

void OpGatherRows(zaya_backend* b, const zaya_op& op) {
  const int64_t n = Cols(op.src[0]), rows = Rows(op.src[0]);
  const int64_t r = Elements(op.aux[0]);
  const float* src = DevIn<float>(op.src[0], "gather source");
  std::vector<std::byte> storage;
  const int32_t* idx = HostIn<int32_t>(b, op.aux[0], "gather index", storage);
  float* dst = Dev<float>(b, op.dst[0], "gather output");
  if (Elements(op.dst[0]) != r * n) Fail("gather output must be [R,N]");
  for (int64_t i = 0; i < r; ++i) {
    if (idx[i] < 0 || idx[i] >= rows) Fail("gather index out of range");
  }
  if (r == 0 || n == 0) return;
  LaunchGatherRows(b->stream, src, DevIndex<int32_t>(b, op.aux[0], "gather index"), r, n, dst);
}

void OpCopy(zaya_backend* b, const zaya_op& op) {
  const uint64_t n = static_cast<uint64_t>(op.i[0]);
  const zaya_tensor& s = op.src[0];
  const zaya_tensor& d = op.dst[0];
  if (s.buffer == nullptr || d.buffer == nullptr) Fail("copy needs a source and a destination");
  if (op.i[0] < 0 || s.offset > s.buffer->bytes || n > s.buffer->bytes - s.offset ||
      d.offset > d.buffer->bytes || n > d.buffer->bytes - d.offset) {
    Fail("copy of " + std::to_string(op.i[0]) + " bytes runs outside a buffer");
  }
  if (n == 0) return;
  if (d.buffer->kind == ZAYA_BUFFER_HOST) {
    b->host_dirty = true;
    d.buffer->copied.clear();
  }
  std::byte* from = s.buffer->device + s.offset;
  std::byte* to = d.buffer->device + d.offset;
  if (s.buffer == d.buffer && from < to + n && to < from + n) {
    // memmove semantics for overlapping ranges: stage through the workspace.
    std::byte* tmp = Take(b, b->workspace, n);
    Check(gpu::CopyAsync(tmp, from, n, b->stream), "copy");
    from = tmp;
  }
  Check(gpu::CopyAsync(to, from, n, b->stream), "copy");
}

void Execute(zaya_backend* b, const zaya_op& op, uint64_t index) {
  switch (op.type) {
    case ZAYA_OP_EMBED:
      return OpEmbed(b, op);
    case ZAYA_OP_RMSNORM:
      return OpRmsNorm(b, op);
    case ZAYA_OP_MATMUL:
      return OpMatMul(b, op);
    case ZAYA_OP_MUL_ADD:
      return OpMulAdd(b, op);
    case ZAYA_OP_MERGE:
      return OpMerge(b, op);
    case ZAYA_OP_CCA:
      return OpCca(b, op);
    case ZAYA_OP_ATTENTION:
      return OpAttention(b, op);
    case ZAYA_OP_ROUTER_SELECT:
      return OpRouterSelect(b, op);
    case ZAYA_OP_MOE:
      return OpMoe(b, op, index);
    case ZAYA_OP_GATHER_ROWS:
      return OpGatherRows(b, op);
    case ZAYA_OP_COPY:
      return OpCopy(b, op);
    default:
      throw OpError(ZAYA_STATUS_UNSUPPORTED, "op type " + std::to_string(op.type) + " is unknown");
  }
}

// Why device `index` cannot run this plugin's kernels, or "" when it can.
std::string DeviceProblem(int index, hipDeviceProp_t* props_out) {
  hipDeviceProp_t props{};
  const hipError_t e = hipGetDeviceProperties(&props, index);
  if (e != hipSuccess) {
    return "hipGetDeviceProperties(" + std::to_string(index) + ") failed: " + hipGetErrorString(e);
  }
  if (props_out != nullptr) *props_out = props;
#if defined(ZAYA_GPU_CUDA)
  // sm_XX code plus compute_XX PTX: runs on that compute capability and (JIT) newer ones.
  if (props.major * 10 + props.minor < ZAYA_CUDA_ARCH) {
    return std::string("device ") + props.name + " has compute capability " +
           std::to_string(props.major) + "." + std::to_string(props.minor) +
           "; this build targets sm_" + std::to_string(ZAYA_CUDA_ARCH) +
           " and newer (set ZAYA_CUDA_ARCH)";
  }
#elif !defined(ZAYA_GPU_EMULATE)
  // A code object exists only for the architectures the plugin was built for (ZAYA_HIP_ARCHS).
  std::string arch = props.gcnArchName;
  arch = arch.substr(0, arch.find(':'));
  const std::string built = ZAYA_HIP_ARCH_LIST;
  bool found = false;
  size_t start = 0;
  while (start <= built.size()) {
    const size_t end = std::min(built.find(',', start), built.size());
    if (built.substr(start, end - start) == arch) found = true;
    start = end + 1;
  }
  if (!found) {
    return "device " + std::to_string(index) + " (" + props.name + ") is " + arch +
           " but this plugin was built for " + built + "; rebuild with -DZAYA_HIP_ARCHS=" + arch +
           " (gfx941/gfx942 need ROCm >= 6, see docs/hip.md)";
  }
#endif
  return "";
}

zaya_status Create(const zaya_backend_options* options, zaya_backend** out) {
  if (out == nullptr) return ZAYA_STATUS_INVALID_ARGUMENT;
  *out = nullptr;
  // Outside Guard, which needs an instance: an allocation failure must still come back as a
  // status, not as an exception through the C ABI (std::terminate).
  std::unique_ptr<zaya_backend> b;
  try {
    b = std::make_unique<zaya_backend>();
  } catch (const std::bad_alloc&) {
    return ZAYA_STATUS_OUT_OF_MEMORY;
  }
  b->tables.pinned = true;
  if (const char* g = std::getenv("ZAYA_HIP_GRAPHS"); g != nullptr && std::strcmp(g, "0") == 0) {
    b->use_graphs = false;
  }
  const zaya_status s = Guard(b.get(), [&] {
    // A member exists in the host's struct only where struct_size covers all of it; log is of
    // no use without its log_user.
    if (options != nullptr) {
      const uint32_t size = options->struct_size;
      if (size >= offsetof(zaya_backend_options, device_index) + sizeof(options->device_index)) {
        b->device = options->device_index;
      }
      if (size >= offsetof(zaya_backend_options, log_user) + sizeof(options->log_user)) {
        b->log = options->log;
        b->log_user = options->log_user;
      }
    }
    int count = 0;
    Check(hipGetDeviceCount(&count), "hipGetDeviceCount");
    if (b->device < 0 || b->device >= count) {
      throw OpError(ZAYA_STATUS_DEVICE_ERROR, "device index " + std::to_string(b->device) +
                                                  " but " + std::to_string(count) +
                                                  " GPU(s) are visible; set backend.device");
    }
    hipDeviceProp_t props{};
    const std::string problem = DeviceProblem(b->device, &props);
    if (!problem.empty()) throw OpError(ZAYA_STATUS_DEVICE_ERROR, problem);
    Check(hipSetDevice(b->device), "hipSetDevice");
    Check(hipStreamCreateWithFlags(&b->stream, hipStreamNonBlocking), "creating a stream");
    void* flag = nullptr;
    Check(hipHostMalloc(&flag, sizeof(int), hipHostMallocMapped), "allocating the error flag");
    b->flag_host = static_cast<int*>(flag);
    *b->flag_host = 0;
    void* flag_dev = nullptr;
    Check(hipHostGetDevicePointer(&flag_dev, flag, 0), "mapping the error flag");
    b->flag_device = static_cast<int*>(flag_dev);
    if (b->log != nullptr) {
      const std::string m = std::string(ZAYA_BACKEND_NAME) + " backend (" + ZAYA_GPU_RUNTIME +
                            "): device " + std::to_string(b->device) + " " + props.name + ", " +
                            std::to_string(props.totalGlobalMem >> 20) + " MiB";
      b->log(b->log_user, 6, m.c_str());
    }
    return ZAYA_STATUS_OK;
  });
  if (s != ZAYA_STATUS_OK) {
    if (b->log != nullptr) b->log(b->log_user, 3, b->last_error.c_str());
    if (b->flag_host != nullptr) static_cast<void>(hipHostFree(b->flag_host));
    if (b->stream != nullptr) static_cast<void>(hipStreamDestroy(b->stream));
    return s;
  }
  *out = b.release();
  return ZAYA_STATUS_OK;
}

void Destroy(zaya_backend* b) {
  if (b == nullptr) return;
  if (b->profile.enabled()) b->profile.Print("hip", "each followed by a sync");
  if (b->log != nullptr && b->graphs.captured() + b->graphs.direct() > 0) {
    std::string m = "step graphs: " + std::to_string(b->graphs.captured()) + " captured, " +
                    std::to_string(b->graphs.replayed()) + " replays, " +
                    std::to_string(b->graphs.direct()) + " steps launched op by op";
    const double steps = static_cast<double>(std::max<uint64_t>(b->whole_steps, 1));
    char split[320];
    std::snprintf(
        split, sizeof split,
        "; per step (%llu steps recorded whole): %.0f us validating and recording, %.0f "
        "us enqueuing, %.0f us waiting for the device; %llu steps waited for the "
        "device part-way (an arena grew, or an index table was read back), %.1f ms in all",
        static_cast<unsigned long long>(b->whole_steps), 1e6 * b->record_s / steps,
        1e6 * b->enqueue_s / steps, 1e6 * b->wait_s / steps,
        static_cast<unsigned long long>(b->waited_steps), 1e3 * b->waited_s);
    m += split;
    b->log(b->log_user, 6, m.c_str());
  }
  static_cast<void>(hipSetDevice(b->device));
  if (b->stream != nullptr) static_cast<void>(hipStreamSynchronize(b->stream));
  FreeArena(b->workspace);
  FreeArena(b->tables);
  if (b->flag_host != nullptr) static_cast<void>(hipHostFree(b->flag_host));
  if (b->stream != nullptr) static_cast<void>(hipStreamDestroy(b->stream));
  delete b;
}

const char* LastError(zaya_backend* b) { return b != nullptr ? b->last_error.c_str() : ""; }

zaya_status DeviceInfo(zaya_backend* b, zaya_device_info* out) {
  if (b == nullptr || out == nullptr) return ZAYA_STATUS_INVALID_ARGUMENT;
  return Guard(b, [&] {
    Check(hipSetDevice(b->device), "hipSetDevice");
    hipDeviceProp_t props{};
    Check(hipGetDeviceProperties(&props, b->device), "hipGetDeviceProperties");
    size_t free_bytes = 0, total_bytes = 0;
    Check(hipMemGetInfo(&free_bytes, &total_bytes), "hipMemGetInfo");
    zaya_device_info info{};
    info.struct_size = sizeof(info);
    info.kind = ZAYA_DEVICE_GPU;
    const std::string name = std::string(props.name) + " (" + ZAYA_GPU_RUNTIME + " device " +
                             std::to_string(b->device) + ")";
    std::strncpy(info.name, name.c_str(), sizeof(info.name) - 1);
    info.total_memory = total_bytes;
    info.free_memory = free_bytes;
    info.caps =
        ZAYA_CAP_BF16_WEIGHTS | ZAYA_CAP_I8_WEIGHTS | ZAYA_CAP_I8_KV;  // no graph capture yet
    const uint32_t n =
        std::min<uint32_t>(out->struct_size ? out->struct_size : sizeof(info), sizeof(info));
    std::memcpy(out, &info, n);
    out->struct_size = n;
    return ZAYA_STATUS_OK;
  });
}

zaya_status BufferAlloc(zaya_backend* b, zaya_buffer_kind kind, uint64_t bytes, zaya_buffer** out) {
  if (b == nullptr || out == nullptr) return ZAYA_STATUS_INVALID_ARGUMENT;
  *out = nullptr;
  return Guard(b, [&] {
    if (kind < ZAYA_BUFFER_WEIGHTS || kind > ZAYA_BUFFER_HOST) Fail("unknown buffer kind");
    Check(hipSetDevice(b->device), "hipSetDevice");
    // Rounding up to whole 256-byte blocks must not wrap past 2^64 to a tiny allocation that
    // claims `bytes`.
    if (bytes > std::numeric_limits<uint64_t>::max() - 255) {
      b->last_error = "cannot allocate " + std::to_string(bytes) +
                      " bytes: more than the address space holds; check the requested size";
      return ZAYA_STATUS_OUT_OF_MEMORY;
    }
    auto buf = std::make_unique<zaya_buffer>();
    const uint64_t rounded = (std::max<uint64_t>(bytes, 1) + 255) / 256 * 256;
    void* p = nullptr;
    hipError_t e;
    if (kind == ZAYA_BUFFER_HOST) {
      e = hipHostMalloc(&p, rounded, hipHostMallocMapped);
    } else {
      e = hipMalloc(&p, rounded);
    }
    if (e != hipSuccess) {
      size_t free_bytes = 0, total_bytes = 0;
      static_cast<void>(hipMemGetInfo(&free_bytes, &total_bytes));
      static_cast<void>(hipGetLastError());  // clear the sticky error of the failed allocation
      b->last_error = std::string("cannot allocate ") + std::to_string(bytes) + " bytes of " +
                      (kind == ZAYA_BUFFER_HOST ? "pinned host" : "device") + " memory (" +
                      hipGetErrorString(e) + "; " + std::to_string(free_bytes >> 20) + " of " +
                      std::to_string(total_bytes >> 20) + " MiB free on the device)";
      return e == hipErrorOutOfMemory ? ZAYA_STATUS_OUT_OF_MEMORY : ZAYA_STATUS_DEVICE_ERROR;
    }
    if (kind == ZAYA_BUFFER_HOST) {
      buf->host = static_cast<std::byte*>(p);
      std::memset(buf->host, 0, rounded);
      void* d = nullptr;
      const hipError_t me = hipHostGetDevicePointer(&d, p, 0);
      if (me != hipSuccess) {
        static_cast<void>(hipHostFree(p));
        Check(me, "mapping pinned host memory");
      }
      buf->device = static_cast<std::byte*>(d);
      void* twin = nullptr;
      const hipError_t te = hipMalloc(&twin, rounded);
      if (te != hipSuccess) {
        static_cast<void>(hipHostFree(p));
        Check(te, "allocating the device copy of pinned host memory");
      }
      buf->twin = static_cast<std::byte*>(twin);
    } else {
      buf->device = static_cast<std::byte*>(p);
      const hipError_t me = hipMemset(p, 0, rounded);
      if (me != hipSuccess) {
        static_cast<void>(hipFree(p));
        Check(me, "zero-filling device memory");
      }
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
  if (b != nullptr) {
    b->allocated -= buf->bytes;
    static_cast<void>(hipSetDevice(b->device));
    if (b->stream != nullptr) static_cast<void>(hipStreamSynchronize(b->stream));
  }
  if (buf->host != nullptr) {
    static_cast<void>(hipHostFree(buf->host));
    static_cast<void>(hipFree(buf->twin));
  } else {
    static_cast<void>(hipFree(buf->device));
  }
  delete buf;
}

zaya_status BufferWrite(zaya_backend* b, zaya_buffer* buf, uint64_t offset, const void* src,
                        uint64_t bytes) {
  if (b == nullptr || buf == nullptr || (src == nullptr && bytes > 0)) {
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  if (offset > buf->bytes || bytes > buf->bytes - offset) {
    b->last_error = "write of " + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                    " outside a buffer of " + std::to_string(buf->bytes);
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  return Guard(b, [&] {
    if (bytes == 0) return ZAYA_STATUS_OK;
    if (buf->host != nullptr) {
      std::memcpy(buf->host + offset, src, bytes);  // no kernel runs between execute() calls
    } else {
      Check(hipSetDevice(b->device), "hipSetDevice");
      Check(hipMemcpy(buf->device + offset, src, bytes, hipMemcpyHostToDevice), "buffer write");
    }
    return ZAYA_STATUS_OK;
  });
}

zaya_status BufferRead(zaya_backend* b, zaya_buffer* buf, uint64_t offset, void* dst,
                       uint64_t bytes) {
  if (b == nullptr || buf == nullptr || (dst == nullptr && bytes > 0)) {
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  if (offset > buf->bytes || bytes > buf->bytes - offset) {
    b->last_error = "read of " + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                    " outside a buffer of " + std::to_string(buf->bytes);
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  return Guard(b, [&] {
    if (bytes == 0) return ZAYA_STATUS_OK;
    if (buf->host != nullptr) {
      std::memcpy(dst, buf->host + offset, bytes);
    } else {
      Check(hipSetDevice(b->device), "hipSetDevice");
      Check(hipMemcpy(dst, buf->device + offset, bytes, hipMemcpyDeviceToHost), "buffer read");
    }
    return ZAYA_STATUS_OK;
  });
}

zaya_status ExecuteOps(zaya_backend* b, const zaya_op* ops, uint64_t n) {
  if (b == nullptr || (ops == nullptr && n > 0)) return ZAYA_STATUS_INVALID_ARGUMENT;
  zaya_status s = Guard(b, [&] {
    Check(hipSetDevice(b->device), "hipSetDevice");
    b->workspace.used = 0;
    b->tables.used = 0;
    ++b->step;
    b->host_dirty = false;
    *b->flag_host = 0;
    return ZAYA_STATUS_OK;
  });
  if (s != ZAYA_STATUS_OK) return s;
  const bool record = b->use_graphs && !b->profile.enabled();
  const auto started_at = std::chrono::steady_clock::now();
  b->waited_mid_step = false;
  b->recorder.Clear();
  if (record) gpu::ActiveRecorder() = &b->recorder;
  for (uint64_t i = 0; i < n && s == ZAYA_STATUS_OK;) {
    uint64_t ran = 1;
    s = Guard(b, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      // Fusion changes what one op's profile entry covers: it is off while profiling.
      ran = b->profile.enabled() ? 0 : ExecuteFused(b, ops, i, n);
      if (ran == 0) {
        ran = 1;
        Execute(b, ops[i], i);
      }
      Check(hipGetLastError(), "kernel launch");
      if (b->profile.enabled()) {
        Sync(b);
        const auto took = std::chrono::steady_clock::now() - t0;
        b->profile.Add(ops[i].type, std::chrono::duration<double>(took).count());
      }
      return ZAYA_STATUS_OK;
    });
    if (s != ZAYA_STATUS_OK) {
      b->last_error = "op " + std::to_string(i) + " (type " + std::to_string(ops[i].type) +
                      "): " + b->last_error;
    }
    i += ran;
  }
  gpu::ActiveRecorder() = nullptr;
  const auto recorded_at = std::chrono::steady_clock::now();
  // The recorded step: whole (a graph when it repeats an earlier one), or the ops before a failure.
  const zaya_status launched = Guard(b, [&] {
    if (b->recorder.empty()) return ZAYA_STATUS_OK;
    std::string what = "kernel launch";
    const std::span<const gpu::Call> calls(b->recorder.begin(), b->recorder.end());
    const hipError_t e = s == ZAYA_STATUS_OK ? b->graphs.Run(calls, b->stream, &what)
                                             : StepGraphs::LaunchEach(calls, b->stream);
    b->recorder.Clear();
    Check(e, what.c_str());
    Check(hipGetLastError(), "kernel launch");
    return ZAYA_STATUS_OK;
  });
  const auto enqueued_at = std::chrono::steady_clock::now();
  // Always wait: on failure too, so that no kernel of this step outlives the call.
  const zaya_status sync = Guard(b, [&] {
    Sync(b);
    return ZAYA_STATUS_OK;
  });
  if (record) {
    using Seconds = std::chrono::duration<double>;
    if (b->waited_mid_step) {
      ++b->waited_steps;
      b->waited_s += Seconds(std::chrono::steady_clock::now() - started_at).count();
    } else {
      ++b->whole_steps;
      b->record_s += Seconds(recorded_at - started_at).count();
      b->enqueue_s += Seconds(enqueued_at - recorded_at).count();
      b->wait_s += Seconds(std::chrono::steady_clock::now() - enqueued_at).count();
    }
  }
  if (s != ZAYA_STATUS_OK) return s;
  if (launched != ZAYA_STATUS_OK) return launched;
  if (sync != ZAYA_STATUS_OK) return sync;
  if (const int flagged = *b->flag_host; flagged != 0) {
    b->last_error = "op " + std::to_string(flagged - 1) + " (type " + std::to_string(ZAYA_OP_MOE) +
                    "): moe: expert index out of range (its tokens got zeros; later ops ran)";
    return ZAYA_STATUS_INVALID_ARGUMENT;
  }
  return ZAYA_STATUS_OK;
}

const zaya_backend_api kApi = {
    ZAYA_BACKEND_ABI_MAJOR,
    ZAYA_BACKEND_ABI_MINOR,
    sizeof(zaya_backend_api),
    ZAYA_BACKEND_NAME,
    ZAYA_VERSION,
    &Create,
    &Destroy,
    &LastError,
    &DeviceInfo,
    &BufferAlloc,
    &BufferFree,
    &BufferWrite,
    &BufferRead,
    &ExecuteOps,
    nullptr,  // weight_prepare: the HIP kernels read the weights as written
};

}  // namespace
}  // namespace zaya::hip

extern "C" __attribute__((visibility("default"))) const zaya_backend_api* zaya_backend_entry_v1(
    void) {
  return &zaya::hip::kApi;
}

extern "C" __attribute__((visibility("default"))) int zaya_backend_score(const char** reason) {
  static std::string why;
  try {
    int count = 0;
    const hipError_t e = hipGetDeviceCount(&count);
    if (e != hipSuccess || count <= 0) {
      why = std::string("no ") + ZAYA_GPU_VENDOR + " GPU found: " + ZAYA_GPU_COUNT_CALL +
            " returned " +
            (e != hipSuccess ? std::string(hipGetErrorString(e)) : std::string("0 devices"));
      static_cast<void>(hipGetLastError());
      if (reason != nullptr) *reason = why.c_str();
      return 0;
    }
    why = zaya::hip::DeviceProblem(0, nullptr);
    if (!why.empty()) {
      if (reason != nullptr) *reason = why.c_str();
      return 0;
    }
  } catch (...) {
    why = "probing the GPU runtime failed";
    if (reason != nullptr) *reason = why.c_str();
    return 0;
  }
  if (reason != nullptr) *reason = "";
#if defined(ZAYA_GPU_EMULATE)
  return 1;  // runs anywhere, but never preferred over the real CPU backend
#else
  return 10;  // a usable GPU beats the CPU backend's 1
#endif
}
