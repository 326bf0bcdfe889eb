// Prometheus text exposition of the daemon's counters (served by the `metrics` op).
//
// Metrics (all prefixed zayad_):
//   requests_total{op,outcome}        counter; outcome is "ok" or an error code ("busy", ...)
//   tokens_generated_total            counter; from `done` usage.completion_tokens
//   time_to_first_token_seconds       histogram; request received -> first `delta`
//   requests_in_flight                gauge; requests the IPC layer is tracking
//   clients                           gauge; clients with requests in flight
//   queue_depth, running_sequences    gauges from Engine::Status() (when it reports them)
//   memory_bytes{budget,kind}         gauges from Engine::Status()["memory"], e.g.
//                                     {budget="state",kind="used"}
//
// Thread safety: every method may be called from any thread (one internal mutex).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

namespace zaya::ipc {

class Metrics {
 public:
  static constexpr std::array<double, 12> kTtftBuckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                          1.0,  2.5,   5.0,  10., 30.,  60.};

  void CountRequest(std::string_view op, std::string_view outcome);
  void AddTokens(uint64_t tokens);
  void ObserveTimeToFirstToken(double seconds);
  void SetInFlight(int64_t requests, int64_t clients);

  uint64_t RequestCount(std::string_view op, std::string_view outcome) const;

  // The whole exposition; `engine_status` is Engine::Status() (any shape; known keys are used).
  std::string Render(const nlohmann::json& engine_status) const;

 private:
  // Transparent, so counting an (op, outcome) that already exists allocates nothing.
  struct KeyLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      const int c = std::string_view(a.first).compare(std::string_view(b.first));
      return c != 0 ? c < 0 : std::string_view(a.second) < std::string_view(b.second);
    }
  };

  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t, KeyLess> requests_;
  uint64_t tokens_ = 0;
  std::array<uint64_t, kTtftBuckets.size()> ttft_buckets_{};
  uint64_t ttft_count_ = 0;
  double ttft_sum_ = 0;
  int64_t in_flight_ = 0;
  int64_t clients_ = 0;
};

}  // namespace zaya::ipc
