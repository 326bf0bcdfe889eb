#include <gtest/gtest.h>

#include <cstdio>
#include <string>

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
