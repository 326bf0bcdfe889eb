// zaya bench-serve: aggregate serving throughput of a running zayad at several concurrency levels.
// Each level runs `--requests` generate requests with that many in flight (one DEALER per worker)
// and reports completed tokens per second of wall time, plus median time to first token.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "ipc/cli_support.h"
#include "ipc/client.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

int Run(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    .name = "bench-serve",
    .summary = "aggregate tokens/s of a running zayad at several concurrency levels",
    .usage = "zaya bench-serve [--endpoint ENDPOINT] [--concurrency 1,4,16] [--requests N] "
             "[--max-tokens N] [--prompt TEXT] [--json]",
    .run = Run,
});

struct Level {
  int concurrency = 0;
  int requests = 0;
  int failed = 0;
  int64_t tokens = 0;
  double seconds = 0;
  double ttft_p50_ms = 0;
};

int Run(const std::vector<std::string>& argv) {
  const Command& self = Registry().at("bench-serve");
  std::string error;
  auto args = Args::Parse(argv, {"endpoint", "concurrency", "requests", "max-tokens", "prompt"},
                          {"json"}, &error);
  if (!args) return UsageError(self, error);
  if (auto rc = RefusePositionals(self, *args,
                                  "quote a prompt of several words: --prompt \"Hello world\""))
    return *rc;
  const std::string endpoint = ipc::cli::ResolveEndpoint(args->Get("endpoint"));
  // Not ipc::cli::ParseIntFlag: these check ranges too, and the message goes through UsageError.
  const auto levels_flag = IntListFlag(*args, "concurrency", "1,4,16", 1, 256, &error);
  const auto requests = IntFlag(*args, "requests", 32, 1, 1000000, &error);
  const auto max_tokens = IntFlag(*args, "max-tokens", 64, 1, 16777216, &error);
  if (!error.empty()) return UsageError(self, error);
  const std::vector<int> levels(levels_flag->begin(), levels_flag->end());
  const std::string prompt = args->GetOr("prompt", "Count from one to twenty:");

  std::vector<Level> results;
  for (int concurrency : levels) {
    Level lv;
    lv.concurrency = concurrency;
    lv.requests = static_cast<int>(*requests);
    std::atomic<int> next{0}, failed{0};
    std::atomic<int64_t> tokens{0};
    std::mutex mu;
    std::vector<double> ttft;
    std::fprintf(stderr, "bench-serve: %d requests at concurrency %d...\n", lv.requests,
                 concurrency);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int w = 0; w < concurrency; ++w) {
      workers.emplace_back([&, w] {
        auto client = ipc::Client::Connect(endpoint);
        if (!client.ok()) {
          failed += lv.requests;
          return;
        }
        for (int i = next++; i < lv.requests; i = next++) {
          nlohmann::json req = {{"op", "generate"},
                                {"prompt", prompt},
                                {"max_tokens", *max_tokens},
                                {"temperature", 1.0},
                                {"seed", 1000 * w + i}};
          auto done = (*client)->Request(req);
          if (!done.ok() || (*done)["event"] != "done") {
            ++failed;
            continue;
          }
          tokens += (*done)["usage"].value("completion_tokens", 0);
          std::lock_guard lock(mu);
          ttft.push_back((*done)["timings"].value("ttft_ms", 0.0));
        }
      });
    }
    for (auto& t : workers) t.join();
    lv.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lv.tokens = tokens;
    lv.failed = failed;
    if (!ttft.empty()) {
      std::nth_element(ttft.begin(), ttft.begin() + static_cast<std::ptrdiff_t>(ttft.size() / 2),
                       ttft.end());
      lv.ttft_p50_ms = ttft[ttft.size() / 2];
    }
    results.push_back(lv);
  }
  if (args->Has("json")) {
    nlohmann::json out = nlohmann::json::array();
    for (const Level& lv : results) {
      out.push_back({{"concurrency", lv.concurrency},
                     {"requests", lv.requests},
                     {"failed", lv.failed},
                     {"tokens", lv.tokens},
                     {"seconds", lv.seconds},
                     {"tokens_per_second", lv.tokens / lv.seconds},
                     {"ttft_p50_ms", lv.ttft_p50_ms}});
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%-12s %-9s %-7s %-8s %-9s %-10s %-12s\n", "concurrency", "requests", "failed",
                "tokens", "seconds", "tokens/s", "ttft p50 ms");
    for (const Level& lv : results) {
      std::printf("%-12d %-9d %-7d %-8lld %-9.2f %-10.1f %-12.1f\n", lv.concurrency, lv.requests,
                  lv.failed, static_cast<long long>(lv.tokens), lv.seconds, lv.tokens / lv.seconds,
                  lv.ttft_p50_ms);
    }
  }
  for (const Level& lv : results) {
    if (lv.failed > 0) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace zaya::cli
