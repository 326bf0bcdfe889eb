// Graph replay of decode steps. A decode step is ~1,000 launches of small kernels whose
// parameters repeat from step to step (positions, block tables and token ids are read from
// memory, not passed). hip_backend.cc records each step's launches (launch_record.h) and hands the
// list to StepGraphs::Run, which replays a graph captured from an identical earlier list, captures
// one when the list repeats the previous step's, and otherwise launches the list as it is.
//
// Graphs are kept per distinct list (a batch size and block-table width give one), at most
// kMaxGraphs, least recently used evicted. Capture uses the thread-local mode, so other threads'
// runtime calls are not affected. The emulator flavour keeps the lists themselves as its
// "graphs" and replays them launch by launch, which tests the recording and matching.
//
// Not thread-safe: one per backend instance, used by the thread that runs execute().
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gpu_port.h"
#include "launch_record.h"

namespace zaya::hip {

class StepGraphs {
 public:
  static constexpr size_t kMaxGraphs = 8;
  // Shorter lists launch as they are: a graph saves nothing on them, and a copy node ran ~20%
  // slower than the same cudaMemcpyAsync on an H100 (zaya bench's 1 GiB device copy).
  static constexpr size_t kMinCalls = 16;

  StepGraphs() = default;
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;
  ~StepGraphs();

  // Enqueues `calls` on `stream` (see above). Returns the first runtime error, with `what` naming
  // the failed call. The calls are copied where they are kept.
  hipError_t Run(std::span<const gpu::Call> calls, hipStream_t stream, std::string* what);

  // Enqueues `calls` one by one (no graph).
  static hipError_t LaunchEach(std::span<const gpu::Call> calls, hipStream_t stream);

  uint64_t captured() const { return captured_; }
  uint64_t replayed() const { return replayed_; }
  uint64_t direct() const { return direct_; }

 private:
  struct Graph {
    std::vector<gpu::Call> calls;
#if !defined(ZAYA_GPU_EMULATE)
    hipGraphExec_t exec = nullptr;
#endif
    uint64_t last_used = 0;
  };

  static bool Same(std::span<const gpu::Call> a, std::span<const gpu::Call> b);
  hipError_t Capture(Graph& g, hipStream_t stream, std::string* what);
  void Evict();

  std::vector<Graph> graphs_;
  std::vector<gpu::Call> previous_;  // the last list launched directly
  uint64_t clock_ = 0;
  uint64_t captured_ = 0, replayed_ = 0, direct_ = 0;
};

}  // namespace zaya::hip
