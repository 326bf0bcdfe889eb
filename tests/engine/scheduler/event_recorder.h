// Test helper: an EventSink that records every event per request id and lets a test wait for a
// request's terminal event. Thread-safe (the engine calls it from its scheduler thread).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace zaya::testing {

class EventRecorder : public EventSink {
 public:
  using Type = EngineEvent::Type;

  void OnEvent(const std::string& id, EngineEvent e) override {
    std::lock_guard lock(mu_);
    events_[id].push_back(std::move(e));
    cv_.notify_all();
  }
  // Waits for the terminal event of `id`; returns all its events.
  std::vector<EngineEvent> Wait(const std::string& id, int seconds = 120) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(seconds), [&] {
      auto it = events_.find(id);
      return it != events_.end() && !it->second.empty() &&
             (it->second.back().type == Type::kDone || it->second.back().type == Type::kError);
    });
    return events_[id];
  }
  size_t Count(const std::string& id, Type t) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (auto& e : events_[id]) n += e.type == t;
    return n;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<EngineEvent>> events_;
};

}  // namespace zaya::testing
