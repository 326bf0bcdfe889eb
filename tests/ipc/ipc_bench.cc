// IPC round-trip benchmark: `health` over ipc:// against an in-process server (FakeEngine), and the
// per-event cost of streaming deltas. Prints p50/p99 in microseconds; asserts nothing about time.
//   ipc_bench [ROUND_TRIPS] [--json]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "ipc/client.h"
#include "ipc/server.h"
#include "tests/ipc/fake_engine.h"

int main(int argc, char** argv) {
  using namespace zaya;
  using Clock = std::chrono::steady_clock;
  int n = 5000;
  bool json_out = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") {
      json_out = true;
    } else {
      n = std::max(10, std::atoi(argv[i]));
    }
  }
  std::string dir = (std::filesystem::temp_directory_path() / "zaya-bench-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) return 1;
  testing::FakeEngine engine(1000, std::chrono::milliseconds(0));
  ipc::Metrics metrics;
  ipc::ServerOptions options;
  options.ipc.endpoint = "ipc://" + dir + "/bench.sock";
  auto server = ipc::Server::Create(options, &engine, &metrics);
  if (!server.ok()) {
    std::fprintf(stderr, "ipc_bench: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::thread loop([&] { (void)(*server)->Run(); });
  auto client = ipc::Client::Connect(options.ipc.endpoint);
  if (!client.ok()) return 1;

  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n + 100; ++i) {
    const auto t0 = Clock::now();
    auto r = (*client)->Request({{"op", "health"}});
    const auto t1 = Clock::now();
    if (!r.ok()) {
      std::fprintf(stderr, "ipc_bench: %s\n", r.status().ToString().c_str());
      return 1;
    }
    if (i >= 100) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  const double p50 = us[us.size() / 2];
  const double p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];

  // Streaming: 1000 deltas as fast as the fake produces them.
  int deltas = 0;
  const auto s0 = Clock::now();
  auto done = (*client)->Request({{"op", "generate"}, {"prompt", "p"}},
                                 [&](const nlohmann::json& e) { deltas += e["event"] == "delta"; });
  const double stream_s = std::chrono::duration<double>(Clock::now() - s0).count();
  const double per_delta_us = deltas > 0 ? stream_s * 1e6 / deltas : 0;

  if (json_out) {
    std::printf(
        "{\"health_round_trip_us\":{\"p50\":%.1f,\"p99\":%.1f,\"n\":%d},"
        "\"stream\":{\"deltas\":%d,\"us_per_delta\":%.2f}}\n",
        p50, p99, n, deltas, per_delta_us);
  } else {
    std::printf("ipc round trip (health over %s, %d requests): p50 %.1f us, p99 %.1f us\n",
                "ipc://", n, p50, p99);
    std::printf("streaming: %d deltas in %.3f s (%.2f us per delta event)\n", deltas, stream_s,
                per_delta_us);
  }
  (*server)->Stop();
  loop.join();
  server->reset();
  std::filesystem::remove_all(dir);
  return done.ok() ? 0 : 1;
}
