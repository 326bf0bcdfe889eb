#include "thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace zaya::cpu {
namespace {

constexpr int kWorkerSpins = 20000;  // x ~2.5 ns per pause: ~50 us before a worker sleeps
constexpr int kCallerSpins = 2000;   // then the waiting caller yields its core

// The state word: the job's generation, its chunk count and the next chunk to claim. The count
// lives in the same word as the index (not beside it) so that a claim compares the index with
// its own job's count: a worker holding a finished job's state could otherwise read the next
// job's larger count (stored before that job's state is published) and claim past the end.
uint32_t Generation(uint64_t state) { return static_cast<uint32_t>(state >> 32); }
int64_t ChunkCount(uint64_t state) { return static_cast<int64_t>((state >> 16) & 0xffffu); }
int64_t NextChunk(uint64_t state) { return static_cast<int64_t>(state & 0xffffu); }
uint64_t JobState(uint32_t generation, int64_t chunks) {
  return static_cast<uint64_t>(generation) << 32 | static_cast<uint64_t>(chunks) << 16;
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  // A job has at most size() chunks, and the state word holds counts below 2^16.
  if (threads > kMaxThreads) {
    throw std::invalid_argument("thread pool: " + std::to_string(threads) +
                                " threads asked for, at most " + std::to_string(kMaxThreads));
  }
  try {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
  } catch (...) {
    // A thread that cannot start (thread or address-space limits) throws with the ones before it
    // running; no destructor runs for a half-built pool, and destroying workers_ with joinable
    // threads would call std::terminate.
    StopWorkers();
    throw;
  }
}

ThreadPool::~ThreadPool() { StopWorkers(); }

void ThreadPool::StopWorkers() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunChunks(uint32_t generation, int index) {
  for (;;) {
    uint64_t s = state_.load(std::memory_order_acquire);
    int64_t c = 0;
    for (;;) {
      if (Generation(s) != generation) return;
      c = NextChunk(s);
      if (c >= ChunkCount(s)) return;
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) break;
    }
    const auto* job = job_.load(std::memory_order_relaxed);
    const int64_t n = n_.load(std::memory_order_relaxed);
    const int64_t chunk = chunk_.load(std::memory_order_relaxed);
    const int64_t begin = c * chunk;
    try {
      (*job)(begin, std::min(n, begin + chunk), index);
    } catch (...) {
      std::lock_guard lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = std::max<int64_t>(1, n / grain);
  const int64_t wanted = std::min<int64_t>(max_chunks, size());
  // As many chunks as ceil(n / chunk) needs: n = 17 on 16 threads is 9 chunks of 2, not 16, of
  // which the last 7 would have started past n (begin > end).
  const int64_t chunk = (n + wanted - 1) / wanted;
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks <= 1 || workers_.empty()) {
    fn(0, n, 0);
    return;
  }
  job_.store(&fn, std::memory_order_relaxed);
  n_.store(n, std::memory_order_relaxed);
  chunk_.store(chunk, std::memory_order_relaxed);
  pending_.store(chunks, std::memory_order_relaxed);
  const uint32_t generation = Generation(state_.load(std::memory_order_relaxed)) + 1;
  bool wake = false;
  {
    std::lock_guard lock(mu_);  // a worker about to sleep re-checks the generation under mu_
    state_.store(JobState(generation, chunks), std::memory_order_release);
    wake = sleepers_ > 0;
  }
  if (wake) work_cv_.notify_all();
  RunChunks(generation, 0);  // the caller works too
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kCallerSpins) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
  std::lock_guard lock(mu_);
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void ThreadPool::WorkerLoop(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = Generation(state_.load(std::memory_order_acquire));
    for (int spins = 0; g == seen && spins < kWorkerSpins; ++spins) {
      _mm_pause();
      g = Generation(state_.load(std::memory_order_acquire));
    }
    if (g == seen) {
      std::unique_lock lock(mu_);
      ++sleepers_;
      work_cv_.wait(lock, [&] {
        return stop_ || Generation(state_.load(std::memory_order_acquire)) != seen;
      });
      --sleepers_;
      if (stop_) return;
      g = Generation(state_.load(std::memory_order_acquire));
    }
    seen = g;
    RunChunks(g, index);
  }
}

}  // namespace zaya::cpu
