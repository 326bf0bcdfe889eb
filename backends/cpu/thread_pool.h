// A fixed pool of worker threads for the CPU backend's kernels.
//
// ParallelFor splits [0, n) into contiguous chunks, runs them on the workers and the calling
// thread, and returns when all are done. Not reentrant: kernels must not call ParallelFor from
// inside a chunk. Thread safety: one caller at a time (the backend's single driving thread).
//
// Latency: a decode step issues hundreds of short ParallelFor calls, so waking sleeping threads
// through a condition variable for each would cost a good fraction of the step. Workers therefore
// spin for a short while (~50 us) after a job before they sleep, and the caller spins (then yields)
// while the last chunks finish. A job's chunks are claimed through one atomic word holding the
// job's generation, its chunk count and the next chunk index, so a worker that wakes late can
// never claim a chunk of a newer job, nor one past the end of an older one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace zaya::cpu {

class ThreadPool {
 public:
  static constexpr int kMaxThreads = 4096;

  // 1 <= threads <= kMaxThreads, including the caller. Throws std::system_error when a thread
  // cannot start, std::invalid_argument above kMaxThreads.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(begin, end, worker_index) for chunks of at least `grain` items (but the last), each
  // non-empty (begin < end), together [0, n) once, at most size() of them. An exception thrown by
  // a chunk is rethrown here after all chunks finished (the first one wins).
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void WorkerLoop(int index);
  // Tells the workers to return and joins them.
  void StopWorkers();
  // Runs chunks of job `generation` until none is left.
  void RunChunks(uint32_t generation, int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;  // guards sleeping, stop_ and error_
  std::condition_variable work_cv_;
  int sleepers_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  // The current job; written before `state_` publishes its generation (release), read after a
  // worker saw that generation (acquire).
  std::atomic<const std::function<void(int64_t, int64_t, int)>*> job_{nullptr};
  std::atomic<int64_t> n_{0}, chunk_{0};
  std::atomic<uint64_t> state_{0};   // generation << 32 | chunk count << 16 | next chunk index
  std::atomic<int64_t> pending_{0};  // chunks of the current job not finished yet
};

}  // namespace zaya::cpu
