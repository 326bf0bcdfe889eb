// Host emulation of the GPU runtime subset in gpu_port.h (ZAYA_GPU_EMULATE builds only): lets the
// HIP backend's kernels and host code run, and be conformance-tested, on a machine without a GPU.
#include <pthread.h>
#include <sys/sysinfo.h>
#include <ucontext.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include "gpu_port.h"

namespace zaya::gpu_emu {

thread_local Uint3 thread_idx;
thread_local Uint3 block_idx;
thread_local dim3 block_dim;
thread_local dim3 grid_dim;

// GPU threads are fibers (ucontext) on the launching host thread: __syncthreads() switches back to
// the scheduler, which resumes every thread of the block in turn, so a barrier costs a few context
// switches instead of waking hundreds of OS threads. One launch runs at a time (launch_mutex).
namespace {

constexpr size_t kStackBytes = 256 * 1024;

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  bool done = false;
  void* fake = nullptr;  // AddressSanitizer's fake stack of this fiber while it is switched out
};

std::mutex launch_mutex;
ucontext_t scheduler;
std::vector<Fiber> fibers;
unsigned current = 0;
const std::function<void()>* current_body = nullptr;
float shuffle_slots[1024];

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer must be told about every stack switch, or it reports false positives.
void* scheduler_fake = nullptr;
void* scheduler_bottom = nullptr;
size_t scheduler_size = 0;
void NoteSchedulerStack() {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &scheduler_bottom, &scheduler_size);
    pthread_attr_destroy(&attr);
  }
}
void EnterFiber(Fiber& f) {
  __sanitizer_start_switch_fiber(&scheduler_fake, f.stack.get(), kStackBytes);
}
void EnteredFiber(Fiber& f) { __sanitizer_finish_switch_fiber(f.fake, nullptr, nullptr); }
void LeaveFiber(Fiber& f, bool finished) {
  __sanitizer_start_switch_fiber(finished ? nullptr : &f.fake, scheduler_bottom, scheduler_size);
}
void BackInScheduler() { __sanitizer_finish_switch_fiber(scheduler_fake, nullptr, nullptr); }
#else
void NoteSchedulerStack() {}
void EnterFiber(Fiber&) {}
void EnteredFiber(Fiber&) {}
void LeaveFiber(Fiber&, bool) {}
void BackInScheduler() {}
#endif

void FiberMain() {
  EnteredFiber(fibers[current]);
  (*current_body)();
  fibers[current].done = true;
  LeaveFiber(fibers[current], true);
  // Returning resumes `scheduler` through uc_link.
}

// Separate (and not inlined) because getcontext returns twice.
__attribute__((noinline)) void PrepareFiber(Fiber& f) {
  if (!f.stack) f.stack.reset(new char[kStackBytes]);
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack.get();
  f.context.uc_stack.ss_size = kStackBytes;
  f.context.uc_link = &scheduler;
  makecontext(&f.context, &FiberMain, 0);
  f.done = false;
  f.fake = nullptr;
}

}  // namespace

void SyncThreads() {
  Fiber& f = fibers[current];
  LeaveFiber(f, false);
  swapcontext(&f.context, &scheduler);
  EnteredFiber(f);
}

float WarpSum(float v, int width) {
  static float warp_sums[1024];
  const unsigned w = static_cast<unsigned>(width);
  shuffle_slots[thread_idx.x] = v;
  SyncThreads();
  if (thread_idx.x % w == 0) {
    float sum = 0.f;
    for (unsigned i = thread_idx.x; i < thread_idx.x + w; ++i) sum += shuffle_slots[i];
    warp_sums[thread_idx.x / w] = sum;
  }
  SyncThreads();
  // The next call's first barrier separates this read from the next write.
  return warp_sums[thread_idx.x / w];
}

void Launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  const unsigned n = block.x;
  if (fibers.size() < n) fibers.resize(n);
  current_body = &body;
  NoteSchedulerStack();
  block_dim = block;
  grid_dim = grid;
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      block_idx = Uint3{bx, by, 0};
      for (unsigned k = 0; k < n; ++k) PrepareFiber(fibers[k]);
      // Each round runs every unfinished thread up to its next barrier (or its end).
      for (bool running = true; running;) {
        running = false;
        for (unsigned k = 0; k < n; ++k) {
          if (fibers[k].done) continue;
          current = k;
          thread_idx = Uint3{k, 0, 0};
          EnterFiber(fibers[k]);
          swapcontext(&scheduler, &fibers[k].context);
          BackInScheduler();
          running = running || !fibers[k].done;
        }
      }
    }
  }
  current_body = nullptr;
}

}  // namespace zaya::gpu_emu

namespace {
thread_local hipError_t last_error = hipSuccess;
hipError_t Ret(hipError_t e) {
  if (e != hipSuccess) last_error = e;
  return e;
}
}  // namespace

hipError_t hipGetDeviceCount(int* count) {
  *count = 1;
  return hipSuccess;
}
hipError_t hipSetDevice(int device) { return Ret(device == 0 ? hipSuccess : hipErrorInvalidValue); }
hipError_t hipGetDeviceProperties(hipDeviceProp_t* prop, int device) {
  if (device != 0) return Ret(hipErrorInvalidValue);
  std::memset(prop, 0, sizeof(*prop));
  std::strncpy(prop->name, "zaya GPU emulator", sizeof(prop->name) - 1);
  std::strncpy(prop->gcnArchName, "emulated", sizeof(prop->gcnArchName) - 1);
  size_t free_bytes = 0;
  hipMemGetInfo(&free_bytes, &prop->totalGlobalMem);
  return hipSuccess;
}
hipError_t hipMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  struct sysinfo si {};
  sysinfo(&si);
  *total_bytes = static_cast<size_t>(si.totalram) * si.mem_unit;
  *free_bytes = static_cast<size_t>(si.freeram) * si.mem_unit;
  return hipSuccess;
}
hipError_t hipMalloc(void** ptr, size_t bytes) {
  *ptr = std::malloc(bytes > 0 ? bytes : 1);
  return Ret(*ptr != nullptr ? hipSuccess : hipErrorOutOfMemory);
}
hipError_t hipFree(void* ptr) {
  std::free(ptr);
  return hipSuccess;
}
hipError_t hipHostMalloc(void** ptr, size_t bytes, unsigned) { return hipMalloc(ptr, bytes); }
hipError_t hipHostFree(void* ptr) { return hipFree(ptr); }
hipError_t hipHostGetDevicePointer(void** device_ptr, void* host_ptr, unsigned) {
  *device_ptr = host_ptr;
  return hipSuccess;
}
hipError_t hipMemcpy(void* dst, const void* src, size_t bytes, hipMemcpyKind) {
  std::memmove(dst, src, bytes);
  return hipSuccess;
}
hipError_t hipMemcpyAsync(void* dst, const void* src, size_t bytes, hipMemcpyKind kind,
                          hipStream_t) {
  return hipMemcpy(dst, src, bytes, kind);
}
hipError_t hipMemset(void* dst, int value, size_t bytes) {
  std::memset(dst, value, bytes);
  return hipSuccess;
}
hipError_t hipMemsetAsync(void* dst, int value, size_t bytes, hipStream_t) {
  return hipMemset(dst, value, bytes);
}
hipError_t hipStreamCreateWithFlags(hipStream_t* stream, unsigned) {
  static int token;
  *stream = &token;
  return hipSuccess;
}
hipError_t hipStreamDestroy(hipStream_t) { return hipSuccess; }
hipError_t hipStreamSynchronize(hipStream_t) { return hipSuccess; }
hipError_t hipGetLastError() {
  const hipError_t e = last_error;
  last_error = hipSuccess;
  return e;
}
const char* hipGetErrorString(hipError_t error) {
  switch (error) {
    case hipSuccess:
      return "no error";
    case hipErrorOutOfMemory:
      return "out of memory";
    case hipErrorNoDevice:
      return "no device";
    default:
      return "invalid value";
  }
}
