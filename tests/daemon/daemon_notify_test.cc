// The real zayad binary under a fake systemd: READY/WATCHDOG/RELOADING/STOPPING, SIGHUP with a good
// and a bad file, SIGTERM draining a request in flight, --check-config.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "ipc/client.h"
#include "tests/daemon/daemon_process.h"
#include "tests/tools/zaya/run_zaya.h"

namespace zaya {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using testing::DaemonProcess;

std::string RunAndCapture(const std::string& command, int* rc) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *rc = WEXITSTATUS(pclose(p));
  return out;
}

TEST(DaemonNotifyTest, CheckConfigPrintsEffectiveConfigOrTheError) {
  DaemonProcess d;
  d.WriteConfig();
  const std::string zayad = std::string(ZAYA_BINARY_DIR) + "/daemon/zayad";
  int rc = -1;
  std::string out = RunAndCapture(zayad + " --check-config --config " + d.config_path(), &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("[model]"), std::string::npos) << out;
  EXPECT_NE(out.find("population = 2"), std::string::npos) << out;
  std::ofstream(d.config_path(), std::ios::app) << "bogus = 1\n";
  out = RunAndCapture(zayad + " --check-config --config " + d.config_path() + " 2>&1", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find(d.config_path()), std::string::npos) << out;
  EXPECT_NE(out.find("bogus"), std::string::npos) << out;
}

TEST(DaemonNotifyTest, ReadyWatchdogReloadAndDrainingStop) {
  DaemonProcess d;
  d.WriteConfig();
  d.Start({"WATCHDOG_USEC=200000"});
  ASSERT_TRUE(d.WaitForNotify("READY=1")) << d.Log();
  ASSERT_TRUE(d.WaitForNotify("WATCHDOG=1", 3s)) << d.Log();

  auto client = ipc::Client::Connect(d.endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto health = (*client)->Request({{"op", "health"}});
  ASSERT_TRUE(health.ok()) << health.status().ToString();
  EXPECT_EQ((*health)["healthy"], true);

  // A bad file: RELOADING=1, then READY=1 again with the old config kept.
  std::ofstream(d.config_path(), std::ios::app) << "bogus = 1\n";
  d.Signal(SIGHUP);
  ASSERT_TRUE(d.WaitForNotify("RELOADING=1", 10s));
  ASSERT_TRUE(d.WaitForNotify("READY=1", 10s));
  EXPECT_NE(d.Log().find("reload failed; keeping the running configuration"), std::string::npos)
      << d.Log();

  // A good file with a changed live key and a restart-only key.
  d.WriteConfig("max_population = 3", "");
  {
    std::string text;
    std::ifstream in(d.config_path());
    text.assign(std::istreambuf_iterator<char>(in), {});
    const auto pos = text.find("state = \"32MiB\"");
    ASSERT_NE(pos, std::string::npos);
    text.replace(pos, 15, "state = \"48MiB\"");
    std::ofstream(d.config_path()) << text;
  }
  d.Signal(SIGHUP);
  ASSERT_TRUE(d.WaitForNotify("RELOADING=1", 10s));
  ASSERT_TRUE(d.WaitForNotify("READY=1", 10s));
  EXPECT_NE(d.Log().find("applied rsa"), std::string::npos) << d.Log();
  EXPECT_NE(d.Log().find("memory.state changed but applies only after a restart"),
            std::string::npos)
      << d.Log();
  // The new rsa.max_population limit is live in validation.
  auto refused = (*client)->Request({{"op", "solve"}, {"prompt", "p"}, {"population", 4}});
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ((*refused)["code"], "invalid_argument");

  // A long request in flight, then SIGTERM: STOPPING=1, the request still ends, exit 0.
  std::atomic<bool> first_delta{false};
  json terminal;
  std::thread streamer([&] {
    auto c = ipc::Client::Connect(d.endpoint());
    if (!c.ok()) return;
    auto done = (*c)->Request({{"op", "generate"},
                               {"prompt", "Once upon a time"},
                               {"max_tokens", 3000},
                               {"temperature", 1.0},
                               {"seed", 1}},
                              [&](const json& e) {
                                if (e["event"] == "delta") first_delta = true;
                              });
    if (done.ok()) terminal = *done;
  });
  for (int i = 0; i < 1000 && !first_delta; ++i) std::this_thread::sleep_for(10ms);
  d.Signal(SIGTERM);
  ASSERT_TRUE(d.WaitForNotify("STOPPING=1", 10s)) << d.Log();
  EXPECT_EQ(d.WaitExit(60s), 0) << d.Log();
  streamer.join();
  ASSERT_TRUE(terminal.is_object()) << "the request in flight got no terminal event\n" << d.Log();
  EXPECT_TRUE(terminal["event"] == "done" || terminal["code"] == "cancelled") << terminal.dump();
  EXPECT_NE(d.Log().find("zayad stopped"), std::string::npos);
}

// A stop while the model loads used to wait in the signalfd until the load finished (minutes for
// a large model, past systemd's stop timeout), and READY=1 went out first. Here a FIFO in place of
// tokenizer.json holds the load until the test writes it.
TEST(DaemonNotifyTest, StopWhileTheModelLoadsExitsAtOnce) {
  DaemonProcess d;
  const std::filesystem::path model = d.dir() + "/model";
  std::filesystem::create_directories(model);
  for (const auto& f : std::filesystem::directory_iterator(DaemonProcess::TinyModel())) {
    if (f.path().filename() != "tokenizer.json") {
      std::filesystem::copy_file(f.path(), model / f.path().filename());
    }
  }
  const std::string fifo = (model / "tokenizer.json").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  d.SetModelPath(model.string());
  d.WriteConfig();
  d.Start();
  ASSERT_TRUE(d.WaitForNotify("STATUS=loading model")) << d.Log();
  std::this_thread::sleep_for(200ms);  // into the load, blocked on the FIFO
  d.Signal(SIGTERM);
  const int rc = d.WaitExit(3s);
  if (rc == -1 && d.Alive()) {
    // Not stopped: let the load finish so that the daemon does not wait for ever.
    std::ifstream real(DaemonProcess::TinyModel() + "/tokenizer.json", std::ios::binary);
    std::ofstream(fifo, std::ios::binary) << real.rdbuf();
  }
  EXPECT_EQ(rc, 0) << d.Log();
  for (const auto& m : d.messages()) {
    EXPECT_EQ(m.find("READY=1"), std::string::npos) << "ready after a stop: " << m;
  }
  EXPECT_TRUE(d.WaitForNotify("STOPPING=1", 1s)) << d.Log();
  EXPECT_NE(d.Log().find("SIGTERM while the model loads"), std::string::npos) << d.Log();
}

TEST(DaemonNotifyTest, StartupFailureIsReportedAndExitsOne) {
  DaemonProcess d;
  d.WriteConfig();
  std::string text;
  {
    std::ifstream in(d.config_path());
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto pos = text.find("native-f32");
  text.replace(pos, 10, "no-such-model");
  std::ofstream(d.config_path()) << text;
  d.Start();
  EXPECT_EQ(d.WaitExit(30s), 1);
  bool ready = false;
  for (const auto& m : d.messages()) ready |= m.find("READY=1") != std::string::npos;
  EXPECT_FALSE(ready) << "READY=1 must only follow a loaded model";
  EXPECT_NE(d.Log().find("cannot start"), std::string::npos) << d.Log();
}

// Rewrites `from` to `to` once in the config file.
void EditConfig(const DaemonProcess& d, const std::string& from, const std::string& to) {
  std::string text;
  {
    std::ifstream in(d.config_path());
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto pos = text.find(from);
  ASSERT_NE(pos, std::string::npos) << from;
  text.replace(pos, from.size(), to);
  std::ofstream(d.config_path()) << text;
}

// model.max_context = 0 leaves the context to the checkpoint (4096 tokens for the tiny one), which
// the config loader never sees: an rsa.budget beyond it passed, and every default solve then failed
// with out_of_range. Start-up now fails saying so, and a reload to such a budget is refused.
TEST(DaemonNotifyTest, RsaBudgetBeyondTheModelsContextFailsStartAndIsRefusedOnReload) {
  DaemonProcess d;
  d.WriteConfig();
  EditConfig(d, "budget = 16\n", "budget = 5000\n");
  d.Start();
  EXPECT_EQ(d.WaitExit(30s), 1) << d.Log();
  for (const auto& m : d.messages()) {
    EXPECT_EQ(m.find("READY=1"), std::string::npos) << "ready with unusable rsa defaults: " << m;
  }
  EXPECT_NE(d.Log().find("cannot start: invalid_argument: rsa.budget = 5000 does not fit in the "
                         "model's context of 4096 tokens"),
            std::string::npos)
      << d.Log();

  d.WriteConfig();
  d.Start();
  ASSERT_TRUE(d.WaitForNotify("READY=1")) << d.Log();
  EditConfig(d, "budget = 16\n", "budget = 5000\n");
  d.Signal(SIGHUP);
  ASSERT_TRUE(d.WaitForNotify("RELOADING=1", 10s)) << d.Log();
  ASSERT_TRUE(d.WaitForNotify("READY=1", 10s)) << d.Log();
  EXPECT_NE(d.Log().find("reload refused, running configuration kept: rsa.budget = 5000 does not "
                         "fit in the model's context of 4096 tokens"),
            std::string::npos)
      << d.Log();
  // The running defaults still serve.
  auto client = ipc::Client::Connect(d.endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto solved = (*client)->Request({{"op", "solve"}, {"prompt", "1+1="}, {"seed", 1}});
  ASSERT_TRUE(solved.ok()) << solved.status().ToString();
  EXPECT_EQ((*solved)["event"], "done") << solved->dump();
  d.Signal(SIGTERM);
  EXPECT_EQ(d.WaitExit(60s), 0) << d.Log();
}

// model.kv_dtype = "int8" through the real daemon: it loads, says so in its log and `status`, packs
// more KV blocks into the same memory.state than the f32 cache the tiny f32 model gets by default
// (about 4x: a byte per value and a scale per row), and answers an RSA solve.
TEST(DaemonNotifyTest, Int8KvCacheServesAnRsaSolveWithMoreBlocksInTheSameBudget) {
  int64_t blocks[2] = {0, 0};
  for (int kv = 0; kv < 2; ++kv) {
    DaemonProcess d;
    d.WriteConfig();
    if (kv == 1)
      EditConfig(d, "weights_dtype = \"f32\"\n", "weights_dtype = \"f32\"\nkv_dtype = \"int8\"\n");
    d.Start();
    ASSERT_TRUE(d.WaitForNotify("READY=1")) << d.Log();
    const std::string endpoint = " --endpoint " + d.endpoint();
    const auto status = testing::RunZaya("status --json" + endpoint);
    ASSERT_EQ(status.rc, 0) << status.out << status.err;
    const auto j = nlohmann::json::parse(status.out);
    EXPECT_EQ(j.at("model").at("kv_dtype"), kv == 1 ? "int8" : "f32") << status.out;
    blocks[kv] = j.at("memory").at("state").at("blocks_total").get<int64_t>();
    if (kv == 1) {
      EXPECT_NE(d.Log().find("KV blocks (int8)"), std::string::npos) << d.Log();
      const auto solve = testing::RunZaya(
          "solve 'What is 2+2?' --mode rsa --population 3 --subset 2 --rounds 1 --budget 16 "
          "--tail 8 --seed 1" +
          endpoint);
      EXPECT_EQ(solve.rc, 0) << solve.err << d.Log();
      EXPECT_NE(solve.err.find("round 1/1: members finished 3/3"), std::string::npos) << solve.err;
    }
    d.Signal(SIGTERM);
    EXPECT_EQ(d.WaitExit(30s), 0) << d.Log();
  }
  EXPECT_GT(blocks[1], 3 * blocks[0]) << "f32 " << blocks[0] << ", int8 " << blocks[1];
}

}  // namespace
}  // namespace zaya
