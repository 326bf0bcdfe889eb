#include "thread_pool.h"

#include <algorithm>

namespace zaya::cpu {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = std::max<int64_t>(1, n / grain);
  const int64_t chunks = std::min<int64_t>(max_chunks, size());
  if (chunks <= 1 || workers_.empty()) {
    fn(0, n, 0);
    return;
  }
  std::unique_lock lock(mu_);
  job_ = &fn;
  n_ = n;
  chunks_ = chunks;
  chunk_ = (n + chunks - 1) / chunks;
  next_chunk_ = 0;
  pending_ = chunks;
  ++generation_;
  lock.unlock();
  work_cv_.notify_all();
  // The caller works too.
  for (;;) {
    lock.lock();
    if (next_chunk_ >= chunks_) {
      done_cv_.wait(lock, [this] { return pending_ == 0; });
      job_ = nullptr;
      if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;
        std::rethrow_exception(e);
      }
      return;
    }
    const int64_t c = next_chunk_++;
    lock.unlock();
    const int64_t begin = c * chunk_;
    const int64_t end = std::min(n, begin + chunk_);
    try {
      fn(begin, end, 0);
    } catch (...) {
      std::lock_guard g(mu_);
      if (!error_) error_ = std::current_exception();
    }
    lock.lock();
    if (--pending_ == 0) done_cv_.notify_all();
    lock.unlock();
  }
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || (generation_ != seen && next_chunk_ < chunks_); });
    if (stop_) return;
    seen = generation_;
    while (job_ != nullptr && next_chunk_ < chunks_) {
      const int64_t c = next_chunk_++;
      const auto* job = job_;
      const int64_t n = n_;
      const int64_t chunk = chunk_;
      lock.unlock();
      const int64_t begin = c * chunk;
      try {
        (*job)(begin, std::min(n, begin + chunk), index);
      } catch (...) {
        lock.lock();
        if (!error_) error_ = std::current_exception();
        lock.unlock();
      }
      lock.lock();
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
}

}  // namespace zaya::cpu
