#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "ipc/client.h"
#include "tests/daemon/daemon_process.h"

namespace zaya {
namespace {

using namespace std::chrono_literals;

struct ShellResult {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

ShellResult Shell(const std::string& command) {
  ShellResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.rc = WEXITSTATUS(pclose(p));
  return r;
}

class IpcIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new testing::DaemonProcess();
    daemon_->WriteConfig();
    daemon_->Start();
    ASSERT_TRUE(daemon_->WaitForNotify("READY=1")) << daemon_->Log();
  }
  static void TearDownTestSuite() {
    daemon_->Signal(SIGTERM);
    EXPECT_EQ(daemon_->WaitExit(30s), 0) << daemon_->Log();
    delete daemon_;
  }
  static std::string Zaya(const std::string& args) {
    return std::string(ZAYA_BINARY_DIR) + "/tools/zaya/zaya " + args + " --endpoint " +
           daemon_->endpoint();
  }
  static testing::DaemonProcess* daemon_;
};

testing::DaemonProcess* IpcIntegrationTest::daemon_ = nullptr;

TEST_F(IpcIntegrationTest, PythonExampleStreamsAnAnswer) {
  ShellResult r = Shell("/usr/bin/python3 " + std::string(ZAYA_SOURCE_DIR) +
                        "/docs/examples/ask.py 'What is 2+2?' --max-tokens 8 --endpoint " +
                        daemon_->endpoint());
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("[done] usage="), std::string::npos) << r.out;
}

TEST_F(IpcIntegrationTest, PythonExampleReportsAnError) {
  ShellResult r =
      Shell("/usr/bin/python3 " + std::string(ZAYA_SOURCE_DIR) +
            "/docs/examples/ask.py 'x' --max-tokens 0 --endpoint " + daemon_->endpoint());
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("zayad error invalid_argument: field 'max_tokens'"), std::string::npos)
      << r.out;
}

TEST_F(IpcIntegrationTest, CliHealthStatusMetrics) {
  ShellResult health = Shell(Zaya("health"));
  EXPECT_EQ(health.rc, 0) << health.out;
  EXPECT_EQ(health.out.rfind("healthy", 0), 0u) << health.out;
  ShellResult status = Shell(Zaya("status"));
  EXPECT_EQ(status.rc, 0) << status.out;
  EXPECT_NE(status.out.find("\"memory\""), std::string::npos) << status.out;
  ShellResult json = Shell(Zaya("status --json"));
  EXPECT_EQ(json.out.rfind("{", 0), 0u) << json.out;
  EXPECT_NE(json.out.find("\"event\":\"done\""), std::string::npos) << json.out;
  ShellResult metrics = Shell(Zaya("metrics"));
  EXPECT_EQ(metrics.rc, 0) << metrics.out;
  EXPECT_NE(metrics.out.find("zayad_requests_total{op=\"health\",outcome=\"ok\"}"),
            std::string::npos)
      << metrics.out;
  EXPECT_NE(metrics.out.find("zayad_memory_bytes{budget=\"state\",kind=\"budget\"} 33554432"),
            std::string::npos)
      << metrics.out;
}

TEST_F(IpcIntegrationTest, CliAskStreamsAndSolveAnswers) {
  ShellResult ask = Shell(Zaya("ask 'Hello there' --max-tokens 8 --temperature 0"));
  EXPECT_EQ(ask.rc, 0) << ask.out;
  EXPECT_FALSE(ask.out.empty());
  ShellResult ask_json = Shell(Zaya("ask 'Hello' --max-tokens 4 --json"));
  EXPECT_EQ(ask_json.rc, 0) << ask_json.out;
  EXPECT_NE(ask_json.out.find("\"event\":\"accepted\""), std::string::npos) << ask_json.out;
  EXPECT_NE(ask_json.out.find("\"event\":\"done\""), std::string::npos) << ask_json.out;
  ShellResult solve =
      Shell(Zaya("solve 'What is 2+2?' --mode parallel --population 2 --budget 8 "
                 "--seed 3"));
  EXPECT_EQ(solve.rc, 0) << solve.out;
  EXPECT_NE(solve.out.find("members finished 2/2"), std::string::npos) << solve.out;
  ShellResult rsa =
      Shell(Zaya("solve 'What is 2+2?' --mode rsa --population 3 --subset 2 "
                 "--rounds 1 --budget 16 --tail 8 --seed 1"));
  EXPECT_EQ(rsa.rc, 0) << rsa.out;
  EXPECT_NE(rsa.out.find("round 1/1: members finished 3/3"), std::string::npos) << rsa.out;
  ShellResult bad = Shell(Zaya("solve 'q' --population 1000"));
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.out.find("zaya solve: invalid_argument: field 'population' must be between 1"),
            std::string::npos)
      << bad.out;
}

TEST(IpcIntegrationNoDaemon, CliSaysTheDaemonIsNotRunning) {
  ShellResult r = Shell(std::string(ZAYA_BINARY_DIR) +
                        "/tools/zaya/zaya health --endpoint ipc:///nonexistent/zayad.sock");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out,
            "zaya health: no zayad at ipc:///nonexistent/zayad.sock: is it running? "
            "systemctl status zayad\n");
}

}  // namespace
}  // namespace zaya

namespace zaya {
namespace {

// Blocks in use, from the real daemon's `status`.
int BlocksUsed(ipc::Client& c) {
  auto st = c.Request({{"op", "status"}});
  EXPECT_TRUE(st.ok());
  return st.ok() ? (*st)["memory"]["state"]["blocks_used"].get<int>() : -1;
}

int WaitForBlocksUsed(ipc::Client& c, int want) {
  int used = -1;
  for (int i = 0; i < 200 && (used = BlocksUsed(c)) != want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return used;
}

TEST_F(IpcIntegrationTest, CancelMidStreamFreesTheRequestsMemory) {
  auto client = ipc::Client::Connect(daemon_->endpoint());
  ASSERT_TRUE(client.ok());
  // A long generation; cancel after the first streamed text.
  ASSERT_TRUE((*client)->Send({{"id", "long"}, {"op", "generate"}, {"prompt", "tell me"},
                               {"max_tokens", 3000}, {"temperature", 1.0}, {"seed", 1}}).ok());
  bool cancelled = false, got_delta = false;
  for (int i = 0; i < 10000; ++i) {
    auto ev = (*client)->Receive(std::chrono::seconds(10));
    ASSERT_TRUE(ev.ok()) << ev.status().ToString();
    if ((*ev)["event"] == "delta" && !got_delta) {
      got_delta = true;
      ASSERT_TRUE((*client)->Cancel("long").ok());
    }
    if ((*ev)["id"] == "long" && ((*ev)["event"] == "error" || (*ev)["event"] == "done")) {
      cancelled = (*ev)["event"] == "error" && (*ev)["code"] == "cancelled";
      break;
    }
  }
  EXPECT_TRUE(got_delta);
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(WaitForBlocksUsed(**client, 0), 0);
}

TEST_F(IpcIntegrationTest, DisconnectMidStreamFreesTheRequestsMemory) {
  auto observer = ipc::Client::Connect(daemon_->endpoint());
  ASSERT_TRUE(observer.ok());
  // The random tiny model can emit its end token early; try seeds until a request is still
  // running (holding blocks) when its client goes away.
  bool disconnected_mid_stream = false;
  for (int seed = 2; seed < 8 && !disconnected_mid_stream; ++seed) {
    auto client = ipc::Client::Connect(daemon_->endpoint());
    ASSERT_TRUE(client.ok());
    ASSERT_TRUE((*client)->Send({{"id", "gone"}, {"op", "generate"}, {"prompt", "never mind"},
                                 {"max_tokens", 3000}, {"temperature", 1.0}, {"seed", seed}}).ok());
    for (int i = 0; i < 100; ++i) {
      auto ev = (*client)->Receive(std::chrono::seconds(10));
      ASSERT_TRUE(ev.ok());
      if ((*ev)["event"] == "delta") break;
    }
    disconnected_mid_stream = BlocksUsed(**observer) > 0;
    client->reset();  // the client's socket closes here
    if (!disconnected_mid_stream) WaitForBlocksUsed(**observer, 0);
  }
  ASSERT_TRUE(disconnected_mid_stream);
  // The daemon notices when a send fails (ROUTER_MANDATORY) or the heartbeat times out.
  int used = -1;
  for (int i = 0; i < 2000 && (used = BlocksUsed(**observer)) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(used, 0) << daemon_->Log().substr(daemon_->Log().size() > 4000 ? daemon_->Log().size() - 4000 : 0);
}

TEST_F(IpcIntegrationTest, TenThousandMalformedMessagesLeaveTheDaemonServing) {
  auto client = ipc::Client::Connect(daemon_->endpoint());
  ASSERT_TRUE(client.ok());
  std::mt19937 rng(7);
  const std::vector<std::string> shapes = {
      "", "{", "[]", "null", "{\"v\":1}", "{\"v\":1,\"id\":\"x\",\"op\":\"nope\"}",
      "{\"v\":2,\"id\":\"x\",\"op\":\"health\"}", "{\"v\":1,\"id\":7,\"op\":\"health\"}",
      "{\"v\":1,\"id\":\"x\",\"op\":\"generate\",\"max_tokens\":1e308}",
      "{\"v\":1,\"id\":\"x\",\"op\":\"generate\",\"prompt\":5}",
      "{\"v\":1,\"id\":\"x\",\"op\":\"solve\",\"population\":-3,\"prompt\":\"q\"}",
      "{\"v\":1,\"id\":\"x\",\"op\":\"generate\",\"prompt\":\"a\",\"bogus\":1}"};
  int replies = 0;
  for (int i = 0; i < 10000; ++i) {
    std::string frame;
    switch (i % 4) {
      case 0: frame = shapes[i % shapes.size()]; break;
      case 1: {
        frame.resize(rng() % 64);
        for (char& ch : frame) ch = static_cast<char>(rng());
        break;
      }
      case 2: frame = std::string(200 + rng() % 100, '[') + "1"; break;  // too deep
      default: {
        const std::string& s = shapes[rng() % shapes.size()];
        frame = s.substr(0, s.empty() ? 0 : rng() % s.size());  // truncated
      }
    }
    ASSERT_TRUE((*client)->SendRaw(frame).ok());
    // Drain replies as we go so neither side's high-water mark is reached.
    while (true) {
      auto ev = (*client)->Receive(std::chrono::milliseconds(i % 100 == 99 ? 2000 : 0));
      if (!ev.ok()) break;
      ++replies;
      EXPECT_EQ((*ev)["event"], "error");
      if (i % 100 != 99) continue;
      break;
    }
  }
  for (;;) {
    auto ev = (*client)->Receive(std::chrono::milliseconds(500));
    if (!ev.ok()) break;
    ++replies;
  }
  EXPECT_EQ(replies, 10000);
  EXPECT_TRUE(daemon_->Alive());
  auto health = (*client)->Request({{"op", "health"}});
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE((*health)["healthy"].get<bool>()) << health->dump();
  auto ok = (*client)->Request({{"op", "generate"}, {"prompt", "still there?"}, {"max_tokens", 4}});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)["event"], "done") << ok->dump();
}

// A user outside the zayad group finds the installed socket out of reach (its folder is 0750
// zayad:zayad). `zaya` used to say "no zayad ... is it running?" then, which sends them to a daemon
// that runs fine; it now says what docs/operations.md promises. Runs the CLI as nobody.
TEST(IpcIntegrationNoDaemon, CliSaysPermissionDeniedOutsideTheGroup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the CLI as another user";
  char tmpl[] = "/tmp/zaya-perm-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  struct RemoveOnExit {  // also when an ASSERT returns early
    std::string dir;
    int fd = -1;
    ~RemoveOnExit() {
      if (fd >= 0) close(fd);
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  const std::string sock_dir = dir + "/run";
  ASSERT_EQ(mkdir(sock_dir.c_str(), 0755), 0);
  const std::string path = sock_dir + "/zayad.sock";
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  cleanup.fd = fd;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups " +
                                std::string(ZAYA_BINARY_DIR) +
                                "/tools/zaya/zaya health --endpoint ipc://" + path;
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);  // the socket itself out of reach
  ShellResult socket_denied = Shell(as_nobody);
  ASSERT_EQ(chmod(sock_dir.c_str(), 0700), 0);  // its folder out of reach, as installed
  ShellResult folder_denied = Shell(as_nobody);
  for (const ShellResult& r : {socket_denied, folder_denied}) {
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_NE(r.out.find("permission denied on " + path), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("zayad group"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("is it running"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace zaya
