#include "attend_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention.h"
#include "thread_pool.h"

namespace zaya::bench {

int RunAttendBench(int argc, char** argv) {
  std::string kv = "bf16", placement = "consecutive";
  int64_t context = 8192, sequences = 16, prefill = 0;
  int reps = 7, threads = 2;
  for (int i = 0; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--kv")
      kv = v;
    else if (a == "--context")
      context = std::atoll(v);
    else if (a == "--sequences")
      sequences = std::atoll(v);
    else if (a == "--blocks")
      placement = v;
    else if (a == "--reps")
      reps = std::atoi(v);
    else if (a == "--threads")
      threads = std::atoi(v);
    else if (a == "--prefill")
      prefill = std::atoll(v);
    else
      return 2;
  }
  if (argc % 2 != 0 || (kv != "bf16" && kv != "int8") || context < 1 || sequences < 1 ||
      (placement != "consecutive" && placement != "interleaved") || reps < 1 || threads < 1 ||
      prefill < 0 || prefill > context) {
    return 2;
  }
  const int64_t nh = 8, nkv = 2, hd = 128, bt = 16, row = nkv * hd;
  const int64_t per_seq = context / bt + 1, blocks = sequences * per_seq;
  const size_t values = static_cast<size_t>(blocks * bt * row);
  std::mt19937 rng(1);
  std::vector<uint16_t> k16, v16;
  std::vector<int8_t> k8, v8;
  std::vector<float> ks, vs;
  cpu::KvCacheView view;
  if (kv == "bf16") {
    k16.resize(values);
    v16.resize(values);
    for (auto* c : {&k16, &v16}) {
      for (uint16_t& x : *c) x = static_cast<uint16_t>(0x3f80 + (rng() & 0x7f));  // 1 .. 2
    }
    view = {k16.data(), v16.data(), cpu::KvType::kBf16, nullptr, nullptr, blocks, bt, nkv, hd};
  } else {
    k8.resize(values);
    v8.resize(values);
    for (auto* c : {&k8, &v8}) {
      for (int8_t& x : *c) x = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    }
    ks.assign(static_cast<size_t>(blocks * bt * nkv), 0.01f);
    vs = ks;
    view = {k8.data(), v8.data(), cpu::KvType::kI8, ks.data(), vs.data(), blocks, bt, nkv, hd};
  }
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  for (int64_t s = 0; s < sequences; ++s) {
    for (int64_t j = 0; j < per_seq; ++j) {
      table[s * per_seq + j] =
          static_cast<int32_t>(placement == "consecutive" ? s * per_seq + j : j * sequences + s);
    }
  }
  // Decode: one token per sequence at the last position. Prefill: the last `prefill` positions
  // of each sequence, as the step that prefills a prompt's final chunk holds them.
  const int64_t per = prefill > 0 ? prefill : 1, t = sequences * per;
  std::vector<float> q(static_cast<size_t>(t * nh * hd), 0.01f), out(q.size());
  std::vector<int32_t> seq(static_cast<size_t>(t)), position(static_cast<size_t>(t));
  double attended = 0;  // (token, position) pairs
  for (int64_t i = 0; i < t; ++i) {
    seq[i] = static_cast<int32_t>(i / per);
    position[i] = static_cast<int32_t>(context - per + i % per);
    attended += static_cast<double>(position[i] + 1);
  }
  cpu::ThreadPool pool(threads);
  cpu::AttendScratch scratch;
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu::Attend(pool, q.data(), t, nh, view, table.data(), per_seq, seq.data(), position.data(),
                0.088f, out.data(), &scratch);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double best = times.front(), median = times[times.size() / 2];
  if (prefill > 0) {
    std::printf(
        "attend %s, %lld sequences x %lld prompt tokens ending at %lld positions, blocks %s, %d "
        "threads: best %.3f ms (%.2f ns a token, position and KV head, per thread), median %.3f "
        "ms\n",
        kv.c_str(), static_cast<long long>(sequences), static_cast<long long>(prefill),
        static_cast<long long>(context), placement.c_str(), threads, best * 1e3,
        best * 1e9 * threads / (attended * static_cast<double>(nkv)), median * 1e3);
    return 0;
  }
  const double bytes = static_cast<double>(sequences * context) *
                       (kv == "bf16" ? 2.0 * row * 2 : 2.0 * (row + 4 * nkv));
  std::printf(
      "attend %s, %lld tokens at %lld positions, blocks %s, %d threads: best %.3f ms (%.1f GB/s "
      "of KV), median %.3f ms\n",
      kv.c_str(), static_cast<long long>(sequences), static_cast<long long>(context),
      placement.c_str(), threads, best * 1e3, bytes / best / 1e9, median * 1e3);
  return 0;
}

}  // namespace zaya::bench
