// The real `zaya` binary's argument checking. Usage errors (exit 2, "zaya CMD: ..." and the usage
// line on stderr) come before any model is opened or daemon reached, so these run with neither: the
// model folder and the endpoint do not exist, and an argument that slipped through would show as
// exit 1 (model or daemon not found) instead of 2.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

namespace {

struct ShellResult {
  int rc = -1;
  std::string out, err;
};

const std::string kNoModel = "/nonexistent/zaya-model";
const std::string kNoDaemon = "--endpoint ipc:///nonexistent/zayad.sock";

// Runs `zaya ARGS` with stdin from /dev/null (a command that wrongly reads stdin gets EOF instead of
// waiting) and a time limit (one that wrongly goes on to work fails with 124 instead of hanging).
ShellResult Zaya(const std::string& args) {
  // One file per test: ctest runs the tests of this file as parallel processes.
  const std::string err_path = ::testing::TempDir() + "/zaya_usage_" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name() +
                               "_" + std::to_string(getpid()) + ".err";
  const std::string cmd = "timeout 60 " + std::string(ZAYA_BINARY_DIR) + "/tools/zaya/zaya " +
                          args + " </dev/null 2>" + err_path;
  ShellResult r;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.rc = WEXITSTATUS(pclose(p));
  std::ifstream f(err_path);
  r.err.assign(std::istreambuf_iterator<char>(f), {});
  std::remove(err_path.c_str());
  return r;
}

// Exit 2, nothing on stdout, and stderr is "zaya CMD: <message>...", then the command's usage.
void ExpectUsageError(const std::string& command, const std::string& args,
                      const std::string& message) {
  SCOPED_TRACE("zaya " + command + " " + args);
  ShellResult r = Zaya(command + " " + args);
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("zaya " + command + ": " + message, 0), 0u) << r.err;
  EXPECT_NE(r.err.find("\nusage: zaya " + command), std::string::npos) << r.err;
}

// ----- positional arguments

TEST(ZayaUsage, TokenizeRefusesTextAsAnArgumentInsteadOfReadingStdin) {
  ExpectUsageError("tokenize", "--model " + kNoModel + " hello",
                   "takes no arguments (got 'hello'); the text is read from stdin");
}

TEST(ZayaUsage, GenerateRefusesTheWordsOfAnUnquotedPrompt) {
  ExpectUsageError("generate", "--model " + kNoModel + " --prompt Hello big world",
                   "takes no arguments (got 'big' 'world'); quote a prompt of several words");
}

TEST(ZayaUsage, CommandsWithoutArgumentsRefuseThemByName) {
  for (const std::string command : {"bench", "detokenize", "chat-template"}) {
    ExpectUsageError(command, "--model " + kNoModel + " stray", "takes no arguments (got 'stray')");
  }
  ExpectUsageError("bench-serve", kNoDaemon + " --prompt Count to ten",
                   "takes no arguments (got 'to' 'ten'); quote a prompt of several words");
  for (const std::string command : {"eval", "health", "status", "metrics"}) {
    ExpectUsageError(command, kNoDaemon + " stray", "takes no arguments (got 'stray')");
  }
}

}  // namespace
