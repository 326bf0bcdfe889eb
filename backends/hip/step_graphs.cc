#include "step_graphs.h"

#include <algorithm>

namespace zaya::hip {

StepGraphs::~StepGraphs() {
#if !defined(ZAYA_GPU_EMULATE)
  for (Graph& g : graphs_) {
    if (g.exec != nullptr) static_cast<void>(hipGraphExecDestroy(g.exec));
  }
#endif
}

bool StepGraphs::Same(std::span<const gpu::Call> a, std::span<const gpu::Call> b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].SameAs(b[i])) return false;
  }
  return true;
}

hipError_t StepGraphs::LaunchEach(std::span<const gpu::Call> calls, hipStream_t stream) {
  std::vector<void*> argv;
  for (const gpu::Call& c : calls) {
    if (c.kernel == nullptr) {
      const hipError_t e = hipMemcpyAsync(c.dst, c.src, c.bytes, hipMemcpyDefault, stream);
      if (e != hipSuccess) return e;
      continue;
    }
#if defined(ZAYA_GPU_EMULATE)
    gpu_emu::Launch(c.grid, c.block, c.body);
#else
    argv.clear();
    for (const uint32_t at : c.offsets) {
      argv.push_back(const_cast<std::byte*>(c.args.data()) + at);
    }
    const hipError_t e = hipLaunchKernel(c.kernel, c.grid, c.block, argv.data(), 0, stream);
    if (e != hipSuccess) return e;
#endif
  }
  return hipSuccess;
}

hipError_t StepGraphs::Capture(Graph& g, hipStream_t stream, std::string* what) {
#if defined(ZAYA_GPU_EMULATE)
  static_cast<void>(g);
  static_cast<void>(stream);
  static_cast<void>(what);
  return hipSuccess;
#else
  hipError_t e = hipStreamBeginCapture(stream, hipStreamCaptureModeThreadLocal);
  if (e != hipSuccess) {
    *what = "beginning a graph capture";
    return e;
  }
  const hipError_t launched = LaunchEach(g.calls, stream);
  hipGraph_t graph = nullptr;
  e = hipStreamEndCapture(stream, &graph);  // ends the capture even when a launch failed
  if (launched != hipSuccess || e != hipSuccess) {
    if (graph != nullptr) static_cast<void>(hipGraphDestroy(graph));
    *what = launched != hipSuccess ? "recording a launch into a graph" : "ending a graph capture";
    return launched != hipSuccess ? launched : e;
  }
  e = gpu::GraphInstantiate(&g.exec, graph);
  static_cast<void>(hipGraphDestroy(graph));
  if (e != hipSuccess) {
    g.exec = nullptr;
    *what = "instantiating a step graph";
  }
  return e;
#endif
}

void StepGraphs::Evict() {
  if (graphs_.size() < kMaxGraphs) return;
  auto oldest =
      std::min_element(graphs_.begin(), graphs_.end(),
                       [](const Graph& a, const Graph& b) { return a.last_used < b.last_used; });
#if !defined(ZAYA_GPU_EMULATE)
  if (oldest->exec != nullptr) static_cast<void>(hipGraphExecDestroy(oldest->exec));
#endif
  graphs_.erase(oldest);
}

hipError_t StepGraphs::Run(std::span<const gpu::Call> calls, hipStream_t stream,
                           std::string* what) {
  ++clock_;
  if (calls.size() < kMinCalls) {
    ++direct_;
    const hipError_t e = LaunchEach(calls, stream);
    if (e != hipSuccess) *what = "kernel launch";
    return e;
  }
  for (Graph& g : graphs_) {
    if (!Same(g.calls, calls)) continue;
    g.last_used = clock_;
    ++replayed_;
#if defined(ZAYA_GPU_EMULATE)
    return LaunchEach(g.calls, stream);
#else
    const hipError_t e = hipGraphLaunch(g.exec, stream);
    if (e != hipSuccess) *what = "launching a step graph";
    return e;
#endif
  }
  if (!calls.empty() && Same(previous_, calls)) {
    Evict();
    Graph g;
    g.calls.assign(calls.begin(), calls.end());
    g.last_used = clock_;
    const hipError_t e = Capture(g, stream, what);
    if (e != hipSuccess) return e;
    previous_.clear();
    graphs_.push_back(std::move(g));
    ++captured_;
#if defined(ZAYA_GPU_EMULATE)
    return LaunchEach(graphs_.back().calls, stream);
#else
    const hipError_t l = hipGraphLaunch(graphs_.back().exec, stream);
    if (l != hipSuccess) *what = "launching a step graph";
    return l;
#endif
  }
  ++direct_;
  const hipError_t e = LaunchEach(calls, stream);
  if (e != hipSuccess) *what = "kernel launch";
  previous_.assign(calls.begin(), calls.end());  // reuses previous_'s buffers
  return e;
}

}  // namespace zaya::hip
