// Host emulation of the GPU runtime subset in gpu_port.h (ZAYA_GPU_EMULATE builds only): lets the
// HIP backend's kernels and host code run, and be conformance-tested, on a machine without a GPU.
#include <sys/sysinfo.h>

#include <barrier>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "gpu_port.h"

namespace zaya::gpu_emu {

thread_local Uint3 thread_idx;
thread_local Uint3 block_idx;
thread_local dim3 block_dim;
thread_local dim3 grid_dim;

namespace {
std::mutex launch_mutex;
std::barrier<>* current_barrier = nullptr;
float shuffle_slots[1024];
}  // namespace

void SyncThreads() { current_barrier->arrive_and_wait(); }

float ShuffleXor(float v, int lane_mask) {
  // Block-wide exchange: correct because every thread of the block calls WarpSumXor together.
  shuffle_slots[thread_idx.x] = v;
  SyncThreads();
  const float other = shuffle_slots[thread_idx.x ^ static_cast<unsigned>(lane_mask)];
  SyncThreads();
  return other;
}

void Launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  const unsigned n = block.x;
  std::barrier<> barrier(static_cast<std::ptrdiff_t>(n));
  current_barrier = &barrier;
  auto worker = [&](unsigned tid) {
    thread_idx = Uint3{tid, 0, 0};
    block_dim = block;
    grid_dim = grid;
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        block_idx = Uint3{bx, by, 0};
        body();
        // No thread starts the next block (and reuses __shared__ statics) before all are done.
        barrier.arrive_and_wait();
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned tid = 1; tid < n; ++tid) threads.emplace_back(worker, tid);
  worker(0);
  for (auto& t : threads) t.join();
  current_barrier = nullptr;
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
    case hipSuccess: return "no error";
    case hipErrorOutOfMemory: return "out of memory";
    case hipErrorNoDevice: return "no device";
    default: return "invalid value";
  }
}
