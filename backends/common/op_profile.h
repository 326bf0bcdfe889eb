// Per-op-type wall-time totals, a diagnostic both backend plugins offer behind an environment
// variable (ZAYA_CPU_PROFILE=1, ZAYA_HIP_PROFILE=1): finding where a decode step's time goes
// without a profiler that understands the plugin. Off by default; when on, the backend adds each
// op's wall time with Add() and prints the table with Print() when it is destroyed.
//
// Thread safety: none; the backend's single driving thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "zaya/backend.h"

namespace zaya::backend_common {

class OpProfile {
 public:
  // Enabled when the environment variable `env` is "1".
  explicit OpProfile(const char* env) {
    const char* v = std::getenv(env);
    enabled_ = v != nullptr && v[0] == '1' && v[1] == '\0';
  }

  bool enabled() const { return enabled_; }
  static double Now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void Add(int32_t op_type, double seconds) {
    const size_t t = static_cast<size_t>(op_type) & (kTypes - 1);
    seconds_[t] += seconds;
    ++count_[t];
  }

  // The table on stderr: count, total, share and mean per op type; `what` says what was timed.
  void Print(const char* backend, const char* what) const {
    static const char* const kNames[kTypes] = {"?",     "embed",  "rmsnorm",       "matmul",
                                               "mul_add", "merge", "cca",          "attention",
                                               "router_select", "moe", "gather", "copy",
                                               "?",     "?",      "?",             "?"};
    double total = 0;
    for (double v : seconds_) total += v;
    std::fprintf(stderr, "zaya %s profile (%.3f s in ops, %s):\n", backend, total, what);
    for (size_t t = 0; t < kTypes; ++t) {
      if (count_[t] == 0) continue;
      std::fprintf(stderr, "  %-14s %9llu ops %10.3f ms %6.1f%% %8.1f us/op\n", kNames[t],
                   static_cast<unsigned long long>(count_[t]), seconds_[t] * 1e3,
                   total > 0 ? 100.0 * seconds_[t] / total : 0.0,
                   seconds_[t] * 1e6 / static_cast<double>(count_[t]));
    }
  }

 private:
  static constexpr size_t kTypes = 16;
  bool enabled_ = false;
  double seconds_[kTypes] = {};
  uint64_t count_[kTypes] = {};
};

}  // namespace zaya::backend_common
