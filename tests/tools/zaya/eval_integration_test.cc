// `zaya eval` against the real zayad serving the bundled models/zaya-tiny-reasoner. The model is
// retrained from time to time, so these tests check the report's shape and arithmetic, never its
// accuracy.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/daemon/daemon_process.h"
#include "tools/zaya/eval_task.h"

namespace zaya {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

struct ShellResult {
  int rc = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs `command`; its stderr goes to `err_path` (read back into `err`), or into `out` when empty.
ShellResult Shell(const std::string& command, const std::string& err_path = "") {
  ShellResult r;
  FILE* p = popen((command + (err_path.empty() ? " 2>&1" : " 2>" + err_path)).c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.rc = WEXITSTATUS(pclose(p));
  if (!err_path.empty()) r.err = ReadFile(err_path);
  return r;
}

class EvalIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new testing::DaemonProcess();
    std::ofstream f(daemon_->config_path());
    f << "[model]\npath = \"" << ZAYA_SOURCE_DIR << "/models/zaya-tiny-reasoner\"\n"
      << "weights_dtype = \"f32\"\n"
      << "[backend]\nthreads = 1\n"
      << "[memory]\nweights = \"64MiB\"\nstate = \"64MiB\"\nrequest = \"32MiB\"\n"
      << "[scheduler]\ndrain_timeout = \"10s\"\n"
      << "[rsa]\npopulation = 2\nsubset = 2\nrounds = 1\ntail = 16\nbudget = 48\n"
      << "[ipc]\nendpoint = \"" << daemon_->endpoint() << "\"\n"
      << "[log]\nlevel = \"info\"\ntarget = \"stderr\"\n";
    f.close();
    daemon_->Start();
    ASSERT_TRUE(daemon_->WaitForNotify("READY=1")) << daemon_->Log();
  }
  static void TearDownTestSuite() {
    daemon_->Signal(SIGTERM);
    EXPECT_EQ(daemon_->WaitExit(30s), 0) << daemon_->Log();
    delete daemon_;
  }
  static ShellResult Eval(const std::string& args) {
    return Shell(std::string(ZAYA_BINARY_DIR) + "/tools/zaya/zaya eval " + args + " --endpoint " +
                     daemon_->endpoint(),
                 daemon_->dir() + "/eval.err");
  }
  static testing::DaemonProcess* daemon_;
};

testing::DaemonProcess* EvalIntegrationTest::daemon_ = nullptr;

TEST_F(EvalIntegrationTest, SingleAndRsaReportWellFormedJson) {
  ShellResult r = Eval(
      "--problems 4 --seed 3 --n-lo 2 --n-hi 3 --mode single,rsa --population 2 --subset 2 "
      "--rounds 1 --tail 16 --budget 48 --max-tokens 48 --concurrency 4 --json --details");
  ASSERT_EQ(r.rc, 0) << r.out << r.err << daemon_->Log();
  const json report = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << r.out;
  EXPECT_EQ(report["problems"], 4);
  EXPECT_EQ(report["seed"], 3);
  EXPECT_EQ(report["interrupted"], false);
  ASSERT_EQ(report["modes"].size(), 2u) << r.out;
  EXPECT_EQ(report["modes"][0]["mode"], "single");
  EXPECT_EQ(report["modes"][1]["mode"], "rsa");

  const auto problems = eval::MakeIterateProblems(3, 4, 2, 3);
  for (const json& m : report["modes"]) {
    SCOPED_TRACE(m["mode"].get<std::string>());
    EXPECT_EQ(m["problems"], 4);
    EXPECT_EQ(m["errors"], 0);
    const int correct = m["correct"], wrong = m["wrong"], unanswered = m["unanswered"];
    EXPECT_EQ(correct + wrong + unanswered + m["errors"].get<int>(), 4);
    EXPECT_DOUBLE_EQ(m["accuracy"].get<double>(), correct / 4.0);
    const eval::Interval ci = eval::Wilson(correct, 4);
    EXPECT_DOUBLE_EQ(m["ci95"][0].get<double>(), ci.lo);
    EXPECT_DOUBLE_EQ(m["ci95"][1].get<double>(), ci.hi);
    EXPECT_GT(m["tokens_total"].get<int>(), 0);
    EXPECT_GT(m["wall_s"].get<double>(), 0.0);
    // Per-problem records: the truth is the generator's, and `correct` agrees with the answer.
    ASSERT_EQ(m["details"].size(), 4u);
    int correct_details = 0;
    for (const json& d : m["details"]) {
      const int index = d["index"];
      ASSERT_GE(index, 0);
      ASSERT_LT(index, 4);
      EXPECT_EQ(d["truth"], problems[index].answer);
      const bool ok = d["answer"].is_string() && d["answer"] == problems[index].answer;
      EXPECT_EQ(d["correct"].get<bool>(), ok) << d.dump();
      EXPECT_LE(d["tokens"].get<int>(), m["mode"] == "single" ? 48 : 2 * 2 * 48);
      correct_details += ok;
    }
    EXPECT_EQ(correct_details, correct);
  }
  const json& rsa = report["modes"][1];
  EXPECT_EQ(rsa["params"]["population"], 2);
  EXPECT_EQ(rsa["params"]["subset"], 2);
  EXPECT_EQ(rsa["params"]["rounds"], 1);
  EXPECT_EQ(rsa["params"]["budget"], 48);
  EXPECT_EQ(rsa["member_accuracy"]["members"], 8);  // 4 problems x N 2
  EXPECT_EQ(report["modes"][0]["params"]["max_tokens"], 48);
  EXPECT_NE(r.err.find("zaya eval: single 4/4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("zaya eval: rsa 4/4"), std::string::npos) << r.err;
}

TEST_F(EvalIntegrationTest, ParallelPrintsATable) {
  ShellResult r = Eval(
      "--problems 2 --n-lo 2 --n-hi 3 --mode parallel --population 2 --budget 32 --concurrency 2");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("zaya eval: 2 problems (seed 0, n 2..3)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("95% interval"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parallel (N 2, beta 32)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/2 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("final-population members correct"), std::string::npos) << r.out;
}

TEST_F(EvalIntegrationTest, RefusedSettingsStopTheRunWithTheDaemonsMessage) {
  ShellResult r = Eval("--problems 50 --mode rsa --population 1000");
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("zaya eval: rsa: invalid_argument: field 'population'"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(EvalIntegrationTest, FixedSeedsReproduceTheRun) {
  const std::string args =
      "--problems 3 --seed 11 --sample-seed 5 --mode single --max-tokens 48 --concurrency 1 "
      "--json --details";
  ShellResult a = Eval(args);
  ShellResult b = Eval(args);
  ASSERT_EQ(a.rc, 0) << a.out << a.err;
  ASSERT_EQ(b.rc, 0) << b.out << b.err;
  const json da = json::parse(a.out)["modes"][0]["details"];
  const json db = json::parse(b.out)["modes"][0]["details"];
  ASSERT_EQ(da.size(), 3u);
  ASSERT_EQ(db.size(), 3u);
  for (size_t i = 0; i < da.size(); ++i) {
    EXPECT_EQ(da[i]["index"], db[i]["index"]);
    EXPECT_FALSE(da[i]["text"].get<std::string>().empty());
    EXPECT_EQ(da[i]["text"], db[i]["text"]) << "problem " << i;
  }
}

TEST_F(EvalIntegrationTest, AContextOverflowStopsTheRun) {
  // The bundled model's context is far below 8000 + 4 x 4000 tokens.
  ShellResult r = Eval(
      "--problems 20 --mode rsa --population 2 --subset 2 --budget 8000 "
      "--tail 4000 --rounds 1");
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("zaya eval: rsa: out_of_range: "), std::string::npos) << r.err;
}

TEST(EvalNoDaemonTest, SaysTheDaemonIsNotRunning) {
  ShellResult r = Shell(std::string(ZAYA_BINARY_DIR) +
                        "/tools/zaya/zaya eval --problems 2 --endpoint "
                        "ipc:///nonexistent/zayad.sock");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out,
            "zaya eval: no zayad at ipc:///nonexistent/zayad.sock: is it running? "
            "systemctl status zayad\n");
}

TEST(EvalUsageTest, BadFlagsAreUsageErrors) {
  for (const char* args :
       {"--mode single,foo", "--mode rsa,rsa", "--n-lo 5 --n-hi 3", "--problems 0",
        "--concurrency x", "--top-p 2", "--temperature 7", "--seed -1",
        "--seed 18446744073709551616", "--details",
        "--frobnicate 1", "positional"}) {
    ShellResult r = Shell(std::string(ZAYA_BINARY_DIR) + "/tools/zaya/zaya eval " + args +
                          " --endpoint ipc:///nonexistent/zayad.sock");
    EXPECT_EQ(r.rc, 2) << args << ": " << r.out;
    EXPECT_EQ(r.out.rfind("zaya eval: ", 0), 0u) << args << ": " << r.out;
    EXPECT_NE(r.out.find("usage: zaya eval"), std::string::npos) << args << ": " << r.out;
  }
}

}  // namespace
}  // namespace zaya
