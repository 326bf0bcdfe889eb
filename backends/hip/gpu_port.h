// gpu_port.h: the one place that knows which GPU runtime the HIP backend is built against.
//
// The backend's sources are written against HIP names (hipMalloc, hipStream_t, __global__, ...).
// This header maps them, for the handful of calls the backend uses, onto one of three runtimes:
//   - HIP (the default): AMD GPUs through Debian's hipcc / ROCm.
//   - CUDA (ZAYA_GPU_CUDA): NVIDIA GPUs through nvcc. HIP's own NVIDIA-platform headers do not
//     compile with CUDA 13 (docs/hip.md), hence these few macros instead.
//   - Emulator (ZAYA_GPU_EMULATE): a host-only implementation for tests on machines without a GPU.
//     Each kernel launch runs its blocks one after another on blockDim.x host threads, with
//     __syncthreads() as a barrier and __shared__ as function statics (safe because only one block
//     of one launch runs at a time). It checks kernel index arithmetic and block-level
//     synchronisation, not GPU memory ordering, warp width 64 or performance.
//
// Kernel code may use: __global__, __device__, __shared__ (fixed-size arrays), __syncthreads(),
// threadIdx.x, blockIdx.{x,y}, blockDim.x, gridDim.{x,y}, ZAYA_LAUNCH, ZAYA_UNROLL (before a loop
// of constant trip count whose arrays must stay in registers), WarpSumXor (all lanes of a warp call
// it together), and <cmath> functions. Nothing else, so that the emulator stays honest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(ZAYA_GPU_EMULATE)

#include <functional>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace zaya::gpu_emu {
struct Uint3 {
  unsigned x = 0, y = 0, z = 0;
};
extern thread_local Uint3 thread_idx;
extern thread_local Uint3 block_idx;
extern thread_local dim3 block_dim;
extern thread_local dim3 grid_dim;
void SyncThreads();
// Sum of `v` over the `width` consecutive threads of the caller's warp (block-wide barrier: every
// thread of the block must call it together, as WarpSumXor's callers do).
float WarpSum(float v, int width);
// Runs `body` for every block of `grid` on `block.x` threads; launches are serialised.
void Launch(dim3 grid, dim3 block, const std::function<void()>& body);
}  // namespace zaya::gpu_emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)
#define ZAYA_UNROLL
#define threadIdx (::zaya::gpu_emu::thread_idx)
#define blockIdx (::zaya::gpu_emu::block_idx)
#define blockDim (::zaya::gpu_emu::block_dim)
#define gridDim (::zaya::gpu_emu::grid_dim)
#define __syncthreads() ::zaya::gpu_emu::SyncThreads()

// The runtime API subset, on host memory.
typedef int hipError_t;
typedef void* hipStream_t;
enum { hipSuccess = 0, hipErrorOutOfMemory = 2, hipErrorInvalidValue = 1, hipErrorNoDevice = 100 };
enum hipMemcpyKind { hipMemcpyHostToDevice, hipMemcpyDeviceToHost, hipMemcpyDefault };
enum { hipStreamNonBlocking = 1, hipHostMallocMapped = 2 };
struct hipDeviceProp_t {
  char name[256];
  char gcnArchName[256];
  size_t totalGlobalMem;
  int major, minor;
};
hipError_t hipGetDeviceCount(int* count);
hipError_t hipSetDevice(int device);
hipError_t hipGetDeviceProperties(hipDeviceProp_t* prop, int device);
hipError_t hipMemGetInfo(size_t* free_bytes, size_t* total_bytes);
hipError_t hipMalloc(void** ptr, size_t bytes);
hipError_t hipFree(void* ptr);
hipError_t hipHostMalloc(void** ptr, size_t bytes, unsigned flags);
hipError_t hipHostFree(void* ptr);
hipError_t hipHostGetDevicePointer(void** device_ptr, void* host_ptr, unsigned flags);
hipError_t hipMemcpy(void* dst, const void* src, size_t bytes, hipMemcpyKind kind);
hipError_t hipMemcpyAsync(void* dst, const void* src, size_t bytes, hipMemcpyKind kind,
                          hipStream_t stream);
hipError_t hipMemset(void* dst, int value, size_t bytes);
hipError_t hipMemsetAsync(void* dst, int value, size_t bytes, hipStream_t stream);
hipError_t hipStreamCreateWithFlags(hipStream_t* stream, unsigned flags);
hipError_t hipStreamDestroy(hipStream_t stream);
hipError_t hipStreamSynchronize(hipStream_t stream);
hipError_t hipGetLastError();
const char* hipGetErrorString(hipError_t error);
#define ZAYA_GPU_RUNTIME "emulator"
#define ZAYA_GPU_VENDOR "emulated"
#define ZAYA_GPU_COUNT_CALL "hipGetDeviceCount"

#elif defined(ZAYA_GPU_CUDA)

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#else
#include <cuda_runtime_api.h>
#endif

#define hipError_t cudaError_t
#define hipSuccess cudaSuccess
#define hipErrorOutOfMemory cudaErrorMemoryAllocation
#define hipErrorNoDevice cudaErrorNoDevice
#define hipStream_t cudaStream_t
#define hipDeviceProp_t cudaDeviceProp
#define hipGetDeviceCount cudaGetDeviceCount
#define hipSetDevice cudaSetDevice
#define hipGetDeviceProperties cudaGetDeviceProperties
#define hipMemGetInfo cudaMemGetInfo
#define hipMalloc cudaMalloc
#define hipFree cudaFree
#define hipHostMalloc cudaHostAlloc
#define hipHostMallocMapped cudaHostAllocMapped
#define hipHostFree cudaFreeHost
#define hipHostGetDevicePointer cudaHostGetDevicePointer
#define hipMemcpy cudaMemcpy
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDefault cudaMemcpyDefault
#define hipMemset cudaMemset
#define hipMemsetAsync cudaMemsetAsync
#define hipStreamCreateWithFlags cudaStreamCreateWithFlags
#define hipStreamNonBlocking cudaStreamNonBlocking
#define hipStreamDestroy cudaStreamDestroy
#define hipStreamSynchronize cudaStreamSynchronize
#define hipGetLastError cudaGetLastError
#define hipGetErrorString cudaGetErrorString
#define hipLaunchKernel cudaLaunchKernel
#define hipGraph_t cudaGraph_t
#define hipGraphExec_t cudaGraphExec_t
#define hipStreamBeginCapture cudaStreamBeginCapture
#define hipStreamEndCapture cudaStreamEndCapture
#define hipStreamCaptureModeThreadLocal cudaStreamCaptureModeThreadLocal
#define hipGraphLaunch cudaGraphLaunch
#define hipGraphExecDestroy cudaGraphExecDestroy
#define hipGraphDestroy cudaGraphDestroy
#define ZAYA_UNROLL _Pragma("unroll")
#define ZAYA_GPU_RUNTIME "cuda"
#define ZAYA_GPU_VENDOR "NVIDIA"
#define ZAYA_GPU_COUNT_CALL "cudaGetDeviceCount"

#else  // HIP on AMD

#if defined(__HIPCC__)
#include <hip/hip_runtime.h>
#else
#include <hip/hip_runtime_api.h>
#endif
#define ZAYA_UNROLL _Pragma("unroll")
#define ZAYA_GPU_RUNTIME "hip"
#define ZAYA_GPU_VENDOR "AMD"
#define ZAYA_GPU_COUNT_CALL "hipGetDeviceCount"

#endif

// Every flavour launches through gpu::Launch (launch_record.h), which records the launch instead
// while a step is being recorded for graph replay.
#define ZAYA_LAUNCH(kernel, grid, block, stream, ...) \
  ::zaya::gpu::Launch(kernel, (grid), (block), (stream), __VA_ARGS__)

#if !defined(ZAYA_GPU_EMULATE)
namespace zaya::gpu {
// hipGraphInstantiate with no flags; CUDA 12 changed the signature (hipGraphInstantiate still has
// HIP 5.2's error-node and log arguments).
inline hipError_t GraphInstantiate(hipGraphExec_t* exec, hipGraph_t graph) {
#if defined(ZAYA_GPU_CUDA)
  return cudaGraphInstantiateWithFlags(exec, graph, 0);
#else
  return hipGraphInstantiate(exec, graph, nullptr, nullptr, 0);
#endif
}
}  // namespace zaya::gpu
#endif

namespace zaya::gpu {

// Lanes per warp (wavefront). gfx90a and gfx94x run wave64; NVIDIA warps are 32 wide.
// The emulator takes either width (ZAYA_GPU_EMULATE_WAVE64 for the AMD layout).
#if defined(ZAYA_GPU_EMULATE_WAVE64) || (!defined(ZAYA_GPU_EMULATE) && !defined(ZAYA_GPU_CUDA))
inline constexpr int kWarp = 64;
#else
inline constexpr int kWarp = 32;
#endif

#if defined(__HIPCC__) || defined(__CUDACC__) || defined(ZAYA_GPU_EMULATE)
__device__ __forceinline__ float BitsToFloat(uint32_t bits) {
#if defined(ZAYA_GPU_EMULATE)
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#else
  return __uint_as_float(bits);
#endif
}

__device__ __forceinline__ uint32_t FloatToBits(float f) {
#if defined(ZAYA_GPU_EMULATE)
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
#else
  return __float_as_uint(f);
#endif
}

// Sum over the lanes of a warp; every lane gets the total. All lanes must call it together.
__device__ __forceinline__ float WarpSumXor(float v) {
#if defined(ZAYA_GPU_EMULATE)
  return ::zaya::gpu_emu::WarpSum(v, kWarp);
#else
  for (int mask = kWarp / 2; mask > 0; mask >>= 1) {
#if defined(ZAYA_GPU_CUDA)
    v += __shfl_xor_sync(0xffffffffu, v, mask);
#else
    v += __shfl_xor(v, mask);
#endif
  }
  return v;
#endif
}
#endif

}  // namespace zaya::gpu
