// IPC benchmark: what a client sees of zayad's protocol path, with a test double behind the engine
// so that only the IPC layer is timed. Prints p50/p99 in microseconds; asserts nothing about time.
//
//   ipc_bench [ROUND_TRIPS] [--json] [--in-process] [--floor] [--endpoint ENDPOINT]
//
// By default the server (ipc::Server + BenchEngine) runs in a forked child process and this process
// is the DEALER client (ipc::Client), as with a real daemon. Measured:
//   health      round trip of `health` (answered on the server's loop thread)
//   generate    round trip of a generate that emits only `done`: the engine hop (server -> engine
//               thread -> event queue -> server) included
//   stream      1000 deltas emitted back to back: wall time per delta event at the client
//   paced       200 deltas emitted 1 ms apart: latency from the engine's OnEvent to the client's
//               Request callback, per delta (steady_clock is CLOCK_MONOTONIC, shared by processes)
// --in-process  runs the server on a thread of this process instead.
// --floor       also times bare libzmq on the same transport (ROUTER echo in a child process,
//               DEALER with blocking send/recv, no JSON): the floor the numbers above sit on.
// --endpoint    times `health` against a running zayad instead (nothing else).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "ipc/client.h"
#include "ipc/server.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Streams on request: max_tokens deltas, `deltas_interval_us` apart (0: back to back), each with
// its emission time, then `done`. A request with max_tokens 1 gets only `done` (the round-trip
// case). Events are emitted from the engine's own thread, as the real scheduler does.
class BenchEngine : public zaya::Engine {
 public:
  BenchEngine() : thread_([this] { Loop(); }) {}
  ~BenchEngine() override {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  zaya::Status Submit(zaya::EngineRequest request, std::shared_ptr<zaya::EventSink> sink) override {
    std::lock_guard lock(mu_);
    jobs_.push_back(
        {request.id, std::move(sink), request.sampling.max_tokens, request.sampling.seed});
    cv_.notify_one();
    return zaya::Status::Ok();
  }
  void Cancel(const std::string&) override {}
  void CancelClient(const std::string&) override {}
  json Status() const override { return {{"model", {{"name", "bench"}}}}; }
  void Drain(int64_t) override {}
  bool Healthy() const override { return true; }

 private:
  struct Job {
    std::string id;
    std::shared_ptr<zaya::EventSink> sink;
    int deltas;
    uint64_t interval_us;  // carried in `seed` so the request needs no extra field
  };
  void Loop() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return quit_ || !jobs_.empty(); });
      if (quit_) return;
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      const int deltas = job.deltas <= 1 ? 0 : job.deltas;
      auto next = Clock::now();
      for (int i = 0; i < deltas; ++i) {
        if (job.interval_us > 0) {
          next += std::chrono::microseconds(job.interval_us);
          std::this_thread::sleep_until(next);
        }
        job.sink->OnEvent(job.id,
                          {zaya::EngineEvent::Type::kDelta, {{"text", "x"}, {"t_ns", NowNs()}}});
      }
      job.sink->OnEvent(job.id, {zaya::EngineEvent::Type::kDone,
                                 {{"text", ""}, {"usage", {{"completion_tokens", deltas}}}}});
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  std::deque<Job> jobs_;
  std::thread thread_;
};

struct Percentiles {
  double p50 = 0, p99 = 0;
  size_t n = 0;
};

Percentiles Summarize(std::vector<double> v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  p.n = v.size();
  p.p50 = v[v.size() / 2];
  p.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  return p;
}

// Round trips of `request` (100 warm-up ones first), in microseconds.
std::vector<double> RoundTrips(zaya::ipc::Client& client, const json& request, int n) {
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n + 100; ++i) {
    const auto t0 = Clock::now();
    auto r = client.Request(request);
    const auto t1 = Clock::now();
    if (!r.ok() || (*r)["event"] != "done") {
      std::fprintf(stderr, "ipc_bench: %s\n",
                   r.ok() ? r->dump().c_str() : r.status().ToString().c_str());
      std::exit(1);
    }
    if (i >= 100) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return us;
}

int RunServer(const std::string& endpoint, std::atomic<bool>* ready) {
  BenchEngine engine;
  zaya::ipc::Metrics metrics;
  zaya::ipc::ServerOptions options;
  options.ipc.endpoint = endpoint;
  auto server = zaya::ipc::Server::Create(options, &engine, &metrics);
  if (!server.ok()) {
    std::fprintf(stderr, "ipc_bench: %s\n", server.status().ToString().c_str());
    return 1;
  }
  if (ready != nullptr) *ready = true;
  return (*server)->Run().ok() ? 0 : 1;
}

// The floor: a ROUTER that echoes each message unchanged.
int RunEchoServer(const std::string& endpoint) {
  void* ctx = zmq_ctx_new();
  void* router = zmq_socket(ctx, ZMQ_ROUTER);
  if (zmq_bind(router, endpoint.c_str()) != 0) return 1;
  char id[256], buf[4096];
  while (true) {
    const int il = zmq_recv(router, id, sizeof id, 0);
    const int bl = zmq_recv(router, buf, sizeof buf, 0);
    if (il < 0 || bl < 0) break;
    zmq_send(router, id, il, ZMQ_SNDMORE);
    zmq_send(router, buf, bl, 0);
  }
  zmq_close(router);
  zmq_ctx_term(ctx);
  return 0;
}

std::vector<double> FloorRoundTrips(const std::string& endpoint, int n) {
  void* ctx = zmq_ctx_new();
  void* dealer = zmq_socket(ctx, ZMQ_DEALER);
  zmq_connect(dealer, endpoint.c_str());
  const std::string msg = R"({"v":1,"id":"c1-1","op":"health"})";
  char buf[4096];
  std::vector<double> us;
  for (int i = 0; i < n + 100; ++i) {
    const auto t0 = Clock::now();
    zmq_send(dealer, msg.data(), msg.size(), 0);
    zmq_recv(dealer, buf, sizeof buf, 0);
    if (i >= 100)
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  zmq_close(dealer);
  zmq_ctx_term(ctx);
  return us;
}

// Starts `fn` in a child process (before this process has threads); returns its pid.
template <typename Fn>
pid_t Fork(Fn fn) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) _exit(fn());
  return pid;
}

void StopChild(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

bool WaitForSocket(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void Print(bool json_out, const char* name, const Percentiles& p, bool last = false) {
  if (json_out) {
    std::printf("\"%s\":{\"p50_us\":%.1f,\"p99_us\":%.1f,\"n\":%zu}%s", name, p.p50, p.p99, p.n,
                last ? "" : ",");
  } else {
    std::printf("%-36s p50 %7.1f us   p99 %7.1f us   (n=%zu)\n", name, p.p50, p.p99, p.n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int n = 5000;
  bool json_out = false, in_process = false, floor = false;
  std::string external;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json_out = true;
    } else if (a == "--in-process") {
      in_process = true;
    } else if (a == "--floor") {
      floor = true;
    } else if (a == "--endpoint" && i + 1 < argc) {
      external = argv[++i];
    } else if (!a.empty() && a[0] != '-') {
      n = std::max(10, std::atoi(a.c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: ipc_bench [ROUND_TRIPS] [--json] [--in-process] [--floor] "
                   "[--endpoint ENDPOINT]\n");
      return 2;
    }
  }
  if (json_out) std::printf("{");

  if (!external.empty()) {
    auto client = zaya::ipc::Client::Connect(external);
    if (!client.ok()) {
      std::fprintf(stderr, "ipc_bench: %s\n", client.status().ToString().c_str());
      return 1;
    }
    Print(json_out, "health round trip", Summarize(RoundTrips(**client, {{"op", "health"}}, n)),
          true);
    if (json_out) std::printf("}\n");
    return 0;
  }

  std::string dir = (std::filesystem::temp_directory_path() / "zaya-bench-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) return 1;
  const std::string path = dir + "/bench.sock";
  const std::string endpoint = "ipc://" + path;

  // Children first, while this process has no threads (fork copies only the calling thread).
  pid_t echo_pid = -1;
  if (floor) {
    echo_pid = Fork([&] { return RunEchoServer("ipc://" + dir + "/echo.sock"); });
  }
  pid_t server_pid = -1;
  std::thread server_thread;
  std::atomic<bool> ready{false};
  if (in_process) {
    server_thread = std::thread([&] { (void)RunServer(endpoint, &ready); });
  } else {
    server_pid = Fork([&] { return RunServer(endpoint, nullptr); });
  }
  int rc = 0;
  if (!WaitForSocket(path)) {
    std::fprintf(stderr, "ipc_bench: the server did not bind %s\n", endpoint.c_str());
    rc = 1;
  }
  auto client = zaya::ipc::Client::Connect(endpoint);
  if (rc == 0 && !client.ok()) {
    std::fprintf(stderr, "ipc_bench: %s\n", client.status().ToString().c_str());
    rc = 1;
  }
  if (rc == 0) {
    zaya::ipc::Client& c = **client;
    if (floor && WaitForSocket(dir + "/echo.sock")) {
      Print(json_out, "libzmq floor (echo, no JSON)",
            Summarize(FloorRoundTrips("ipc://" + dir + "/echo.sock", n)));
    }
    Print(json_out, "health round trip", Summarize(RoundTrips(c, {{"op", "health"}}, n)));
    Print(json_out, "generate round trip (engine hop)",
          Summarize(RoundTrips(c, {{"op", "generate"}, {"prompt", "p"}, {"max_tokens", 1}},
                               std::max(10, n / 5))));

    // Back-to-back deltas: client-side wall time per delta event.
    constexpr int kBurst = 1000;
    int deltas = 0;
    Clock::time_point first{}, last{};
    auto done = c.Request({{"op", "generate"}, {"prompt", "p"}, {"max_tokens", kBurst}},
                          [&](const json& e) {
                            if (e["event"] != "delta") return;
                            last = Clock::now();
                            if (deltas++ == 0) first = last;
                          });
    const double per_delta =
        deltas > 1 ? std::chrono::duration<double, std::micro>(last - first).count() / (deltas - 1)
                   : 0;
    if (!done.ok() || deltas != kBurst) rc = 1;

    // Paced deltas: emission -> client callback, per delta.
    std::vector<double> lat;
    auto paced =
        c.Request({{"op", "generate"}, {"prompt", "p"}, {"max_tokens", 200}, {"seed", 1000}},
                  [&](const json& e) {
                    if (e["event"] == "delta")
                      lat.push_back((NowNs() - e["t_ns"].get<int64_t>()) / 1e3);
                  });
    if (!paced.ok() || lat.size() != 200) rc = 1;
    const Percentiles pl = Summarize(lat);
    if (json_out) {
      std::printf("\"stream\":{\"deltas\":%d,\"us_per_delta\":%.2f},", deltas, per_delta);
      Print(json_out, "paced_delta_latency", pl, true);
    } else {
      std::printf("%-36s %7.2f us per delta event (%d back-to-back deltas)\n", "stream", per_delta,
                  deltas);
      Print(json_out, "paced delta latency (1 ms apart)", pl);
    }
  }
  if (json_out) std::printf("}\n");
  client = zaya::Status(zaya::StatusCode::kCancelled, "done");  // closes the DEALER first
  StopChild(server_pid);
  StopChild(echo_pid);
  if (server_thread.joinable()) {
    // The in-process server has no handle here; the process exits instead of joining.
    std::fflush(nullptr);
    std::filesystem::remove_all(dir);
    _exit(rc);
  }
  std::filesystem::remove_all(dir);
  return rc;
}
