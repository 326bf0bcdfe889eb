// A test double behind engine/engine.h: each accepted request streams `deltas` delta events ("t0",
// "t1", ...) from its own thread, `delta_interval` apart, then `done` with the concatenated text.
// Records Submit/Cancel/CancelClient calls so tests can check what the server did.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"

namespace zaya::testing {

class FakeEngine : public Engine {
 public:
  explicit FakeEngine(int deltas = 5,
                      std::chrono::milliseconds delta_interval = std::chrono::milliseconds(1))
      : deltas_(deltas), interval_(delta_interval), thread_([this] { Loop(); }) {}

  ~FakeEngine() override {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Submit answers this status (instead of accepting) while set.
  void RefuseWith(zaya::Status s) {
    std::lock_guard lock(mu_);
    refuse_ = std::move(s);
  }
  void SetHealthy(bool h) { healthy_ = h; }
  void SetStream(int deltas, std::chrono::milliseconds interval) {
    std::lock_guard lock(mu_);
    deltas_ = deltas;
    interval_ = interval;
  }

  zaya::Status Submit(EngineRequest request, std::shared_ptr<EventSink> sink) override {
    std::lock_guard lock(mu_);
    ++submitted_;
    last_request_ = request;
    if (!refuse_.ok()) return refuse_;
    Running r;
    r.sink = std::move(sink);
    r.client = request.client;
    r.remaining = deltas_;
    r.next = std::chrono::steady_clock::now();
    r.interval = interval_;
    running_[request.id] = std::move(r);
    pending_accept_.push_back(request.id);
    cv_.notify_all();
    return zaya::Status::Ok();
  }

  // Cancels take effect this long after Cancel, as the real engine applies them at its next step
  // (by id, whatever request then has it); 0: at once.
  void SetCancelDelay(std::chrono::milliseconds delay) {
    std::lock_guard lock(mu_);
    cancel_delay_ = delay;
  }

  void Cancel(const std::string& request_id) override {
    std::lock_guard lock(mu_);
    cancelled_.push_back(request_id);
    if (cancel_delay_.count() > 0) {
      deferred_cancels_.emplace_back(request_id, std::chrono::steady_clock::now() + cancel_delay_);
      cv_.notify_all();
      return;
    }
    CancelLocked(request_id);
  }

  void CancelLocked(const std::string& request_id) {
    auto it = running_.find(request_id);
    if (it == running_.end()) return;
    it->second.sink->OnEvent(
        request_id, {EngineEvent::Type::kError, {{"code", "cancelled"}, {"message", "cancelled"}}});
    running_.erase(it);
  }

  void CancelClient(const std::string& client) override {
    std::lock_guard lock(mu_);
    cancelled_clients_.push_back(client);
    for (auto it = running_.begin(); it != running_.end();) {
      if (it->second.client == client) {
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    cv_.notify_all();
  }

  nlohmann::json Status() const override {
    std::lock_guard lock(mu_);
    return {{"model", {{"name", "fake"}}},
            {"queue", {{"depth", 0}, {"max", 64}}},
            {"running", {{"requests", running_.size()}, {"sequences", running_.size()}}},
            {"memory", {{"state", {{"budget", 1024}, {"used", 64 * running_.size()}}}}}};
  }

  void Drain(int64_t timeout_ms) override {
    std::unique_lock lock(mu_);
    draining_ = true;
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return running_.empty(); });
  }

  bool Healthy() const override { return healthy_; }

  int submitted() const {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  size_t running() const {
    std::lock_guard lock(mu_);
    return running_.size();
  }
  std::vector<std::string> cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }
  std::vector<std::string> cancelled_clients() const {
    std::lock_guard lock(mu_);
    return cancelled_clients_;
  }
  EngineRequest last_request() const {
    std::lock_guard lock(mu_);
    return last_request_;
  }

 private:
  struct Running {
    std::shared_ptr<EventSink> sink;
    std::string client;
    int remaining = 0;
    int sent = 0;
    std::string text;
    std::chrono::steady_clock::time_point next;
    std::chrono::milliseconds interval{1};
  };

  void Loop() {
    std::unique_lock lock(mu_);
    while (!quit_) {
      for (const auto& id : pending_accept_) {
        auto it = running_.find(id);
        if (it != running_.end()) {
          it->second.sink->OnEvent(id, {EngineEvent::Type::kAccepted, {{"queue_position", 0}}});
        }
      }
      pending_accept_.clear();
      const auto now = std::chrono::steady_clock::now();
      auto wake = now + std::chrono::milliseconds(50);
      for (auto it = deferred_cancels_.begin(); it != deferred_cancels_.end();) {
        if (it->second <= now) {
          CancelLocked(it->first);
          it = deferred_cancels_.erase(it);
        } else {
          wake = std::min(wake, it->second);
          ++it;
        }
      }
      for (auto it = running_.begin(); it != running_.end();) {
        Running& r = it->second;
        if (r.next > now) {
          wake = std::min(wake, r.next);
          ++it;
          continue;
        }
        if (r.remaining > 0) {
          const std::string piece = "t" + std::to_string(r.sent++);
          r.text += piece;
          --r.remaining;
          r.sink->OnEvent(it->first, {EngineEvent::Type::kDelta, {{"text", piece}}});
          r.next = now + r.interval;
          wake = std::min(wake, r.next);
          ++it;
        } else {
          r.sink->OnEvent(it->first,
                          {EngineEvent::Type::kDone,
                           {{"text", r.text},
                            {"usage", {{"prompt_tokens", 3}, {"completion_tokens", r.sent}}}}});
          it = running_.erase(it);
          cv_.notify_all();
        }
      }
      cv_.wait_until(lock, wake);
    }
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  bool draining_ = false;
  int deltas_;
  std::chrono::milliseconds interval_;
  zaya::Status refuse_;
  std::atomic<bool> healthy_{true};
  int submitted_ = 0;
  EngineRequest last_request_;
  std::map<std::string, Running> running_;
  std::vector<std::string> pending_accept_;
  std::vector<std::string> cancelled_;
  std::vector<std::string> cancelled_clients_;
  std::chrono::milliseconds cancel_delay_{0};
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> deferred_cancels_;
  std::thread thread_;  // last: starts after every member above is constructed
};

}  // namespace zaya::testing
