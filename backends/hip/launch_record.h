// Recording a step's launches, so that hip_backend.cc can replay a step whose launches are
// byte-for-byte those of an earlier step as one captured graph (hipGraph / cudaGraph) instead of
// ~1,000 separate launches. While a Recorder is active on the calling thread, ZAYA_LAUNCH and
// CopyAsync append what they would enqueue to it instead of enqueuing it.
//
// Why replaying by comparison is safe: a kernel's parameters are all it receives (pointers,
// shapes, scalars); everything else it reads from memory at run time. Two steps whose parameter
// bytes are equal therefore launch the same work on the current contents of the same memory, and
// a graph captured from the first runs the second exactly. Parameter structs must have no
// implicit padding (kernels.h pads them by hand and checks it), or stale padding bytes would make
// equal launches compare unequal (a needless capture, never a wrong replay).
//
// Thread safety: the recorder pointer is thread-local; a Recorder belongs to one backend instance,
// which the ABI lets only one thread use at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gpu_port.h"

#if defined(ZAYA_GPU_EMULATE)
#include <functional>
#include <tuple>
#endif

namespace zaya::gpu {

// One recorded kernel launch or asynchronous copy.
struct Call {
  const void* kernel = nullptr;  // null: a copy of `bytes` from src to dst
  dim3 grid, block;
  std::vector<std::byte> args;    // the kernel's parameters, each at its aligned offset
  std::vector<uint32_t> offsets;  // where each parameter starts in `args`
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
#if defined(ZAYA_GPU_EMULATE)
  std::function<void()> body;  // the kernel applied to these parameters (the emulator's replay)
#endif

  bool SameAs(const Call& o) const {
    return kernel == o.kernel && grid.x == o.grid.x && grid.y == o.grid.y && grid.z == o.grid.z &&
           block.x == o.block.x && block.y == o.block.y && block.z == o.block.z && args == o.args &&
           dst == o.dst && src == o.src && bytes == o.bytes;
  }
};

// calls[0, used) are the step's. The Call objects past `used` keep their buffers, so that once a
// few steps have run, recording one allocates nothing (per-call allocations were a share of the
// host time a recorded step costs before the device starts).
struct Recorder {
  std::vector<Call> calls;
  size_t used = 0;

  Call& Next() {
    if (used == calls.size()) {
      calls.emplace_back();
      calls.back().args.reserve(256);
      calls.back().offsets.reserve(16);
    }
    Call& c = calls[used++];
    c.kernel = nullptr;
    c.grid = dim3();
    c.block = dim3();
    c.args.clear();
    c.offsets.clear();
    c.dst = nullptr;
    c.src = nullptr;
    c.bytes = 0;
    return c;
  }
  const Call* begin() const { return calls.data(); }
  const Call* end() const { return calls.data() + used; }
  bool empty() const { return used == 0; }
  void Clear() { used = 0; }
};

// The calling thread's active recorder, or null (launch at once).
inline Recorder*& ActiveRecorder() {
  static thread_local Recorder* recorder = nullptr;
  return recorder;
}

// hipMemcpyAsync(dst, src, bytes, hipMemcpyDefault, stream), or its record.
inline hipError_t CopyAsync(void* dst, const void* src, size_t bytes, hipStream_t stream) {
  if (Recorder* r = ActiveRecorder()) {
    Call& c = r->Next();
    c.dst = dst;
    c.src = src;
    c.bytes = bytes;
    return hipSuccess;
  }
  return hipMemcpyAsync(dst, src, bytes, hipMemcpyDefault, stream);
}

#if defined(__CUDACC__) || defined(__HIPCC__) || defined(ZAYA_GPU_EMULATE)
template <typename P, typename A>
void AppendParam(Call& c, const A& arg) {
  const P value = static_cast<P>(arg);
  const size_t at = (c.args.size() + alignof(P) - 1) / alignof(P) * alignof(P);
  c.offsets.push_back(static_cast<uint32_t>(at));
  c.args.resize(at + sizeof(P));
  std::memcpy(c.args.data() + at, &value, sizeof(P));
}

// What ZAYA_LAUNCH expands to: `kernel<<<grid, block, 0, stream>>>(args...)` or its record.
template <typename... P, typename... A>
void Launch(void (*kernel)(P...), dim3 grid, dim3 block, hipStream_t stream, const A&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "a kernel launched with the wrong argument count");
  if (Recorder* r = ActiveRecorder()) {
    Call& c = r->Next();
    c.kernel = reinterpret_cast<const void*>(kernel);
    c.grid = grid;
    c.block = block;
    (AppendParam<P>(c, args), ...);
#if defined(ZAYA_GPU_EMULATE)
    c.body = [kernel, params = std::tuple<P...>(static_cast<P>(args)...)] {
      std::apply(kernel, params);
    };
#endif
    return;
  }
#if defined(ZAYA_GPU_EMULATE)
  static_cast<void>(stream);
  ::zaya::gpu_emu::Launch(grid, block, [&] { kernel(static_cast<P>(args)...); });
#else
  // clang-format off
  kernel<<<grid, block, 0, stream>>>(static_cast<P>(args)...);
  // clang-format on
#endif
}
#endif

}  // namespace zaya::gpu
