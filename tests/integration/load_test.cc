// Budgets under load, with real processes: the real zayad on the tiny checkpoint and 64 concurrent
// clients (one DEALER each) whose requests together may need 4x memory.state. Every request must
// end in a complete answer or a precise refusal (over_budget / busy); none may hang or fail
// otherwise; the daemon keeps serving and its peak RSS stays within the budgets plus the fixed
// overhead documented in docs/operations.md.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ipc/client.h"
#include "tests/daemon/daemon_process.h"

namespace zaya {
namespace {

// Peak resident set of a process in bytes (VmHWM), 0 if unknown.
uint64_t PeakRss(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

constexpr uint64_t kWeightsBudget = 64ull << 20;
constexpr uint64_t kStateBudget = 2ull << 20;
// Fixed overhead beyond the two budgets: code and libraries (OpenBLAS, libzmq, libstdc++), thread
// stacks, the tokenizer and chat template, step scratch and per-request bookkeeping.
// docs/operations.md records the measured figure; this bound leaves room for allocator noise.
constexpr uint64_t kFixedOverhead = 48ull << 20;

TEST(LoadTest, SixtyFourClientsOverFourTimesTheStateBudget) {
  testing::DaemonProcess daemon;
  daemon.WriteConfig("", "");
  // Replace the memory section of the helper's config with this test's budgets.
  {
    std::ifstream in(daemon.config_path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto begin = text.find("[memory]");
    const auto end = text.find("[scheduler]");
    text.replace(begin, end - begin,
                 "[memory]\nweights = \"64MiB\"\nstate = \"2MiB\"\nrequest = \"1MiB\"\n");
    const auto sched = text.find("[scheduler]\n");
    text.insert(sched + 12, "max_queue = 24\nmax_running_sequences = 32\n");
    std::ofstream(daemon.config_path()) << text;
  }
  daemon.Start();
  ASSERT_TRUE(daemon.WaitForNotify("READY=1")) << daemon.Log();

  // The pool holds (2 MiB - 32 state slots) / 8 KiB = ~249 blocks of 16 tokens ~ 3,980 tokens.
  // 64 requests: 56 generate with up to 240 new tokens (worst case ~250 tokens each: ~14,000
  // tokens, 3.5x the pool), 4 small solves (population 2), 4 that can never fit (over_budget).
  std::atomic<int> done{0}, over_budget{0}, busy{0}, other{0};
  std::mutex mu;
  std::map<std::string, int> other_codes;
  std::vector<std::thread> clients;
  for (int i = 0; i < 64; ++i) {
    clients.emplace_back([&, i] {
      auto client = ipc::Client::Connect(daemon.endpoint());
      if (!client.ok()) {
        other++;
        return;
      }
      nlohmann::json req;
      if (i < 56) {
        req = {{"op", "generate"},
               {"prompt", "load test " + std::to_string(i)},
               {"max_tokens", 120 + (i % 5) * 30},
               {"temperature", 0.9},
               {"seed", i}};
      } else if (i < 60) {
        req = {{"op", "solve"},   {"prompt", "what is " + std::to_string(i) + "+1?"},
               {"population", 2}, {"subset", 1},
               {"rounds", 1},     {"tail", 8},
               {"budget", 32},    {"seed", i}};
      } else {
        req = {{"op", "generate"}, {"prompt", "too big"}, {"max_tokens", 3900}};
      }
      auto result = (*client)->Request(req);
      if (!result.ok()) {
        std::lock_guard lock(mu);
        other_codes["client:" + result.status().ToString()]++;
        other++;
        return;
      }
      const auto& ev = *result;
      if (ev["event"] == "done") {
        done++;
      } else if (ev["code"] == "over_budget") {
        over_budget++;
      } else if (ev["code"] == "busy") {
        busy++;
      } else {
        std::lock_guard lock(mu);
        other_codes[ev.dump()]++;
        other++;
      }
    });
  }
  for (auto& t : clients) t.join();
  for (const auto& [what, n] : other_codes) ADD_FAILURE() << n << " x " << what;
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(done + over_budget + busy, 64);
  EXPECT_GE(over_budget.load(), 4);
  EXPECT_GE(done.load(), 24);  // at least the queue's worth were served

  // Still serving, and every block returned.
  auto client = ipc::Client::Connect(daemon.endpoint());
  ASSERT_TRUE(client.ok());
  auto health = (*client)->Request({{"op", "health"}});
  ASSERT_TRUE(health.ok());
  EXPECT_EQ((*health)["event"], "done") << health->dump();
  auto status = (*client)->Request({{"op", "status"}});
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["memory"]["state"]["blocks_used"], 0) << status->dump();

  const uint64_t rss = PeakRss(daemon.pid());
  ASSERT_GT(rss, 0u);
  std::printf("load: done %d, over_budget %d, busy %d; peak RSS %.1f MiB (budgets %.0f MiB)\n",
              done.load(), over_budget.load(), busy.load(), rss / 1048576.0,
              (kWeightsBudget + kStateBudget) / 1048576.0);
  // Against what the weights really occupy (the budget is far larger than the tiny model), so the
  // check bites: resident = weights + state pool + fixed overhead.
  const uint64_t weights = (*status)["memory"]["weights"]["used_bytes"].get<uint64_t>();
  EXPECT_LE(weights, kWeightsBudget);
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's shadow memory and quarantine inflate the RSS; the bound holds in release.
  (void)weights;
#else
  EXPECT_LE(rss, weights + kStateBudget + kFixedOverhead);
#endif
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.WaitExit(), 0);
}

}  // namespace
}  // namespace zaya
