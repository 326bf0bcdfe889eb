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

#include "run_zaya.h"

namespace {

using ShellResult = zaya::testing::ZayaRun;

const std::string kNoModel = "/nonexistent/zaya-model";
const std::string kNoDaemon = "--endpoint ipc:///nonexistent/zayad.sock";

ShellResult Zaya(const std::string& args) { return zaya::testing::RunZaya(args, 60); }

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

// ----- numbers: the whole value is the number, within range

TEST(ZayaUsage, GenerateRefusesNumbersThatAreNotWhollyNumbers) {
  const std::string base = "--model " + kNoModel + " --prompt Hello ";
  // std::stoi read these as 1 and 8, and std::stoull wrapped -1 to 2^64-1.
  ExpectUsageError("generate", base + "--max-tokens 1e3",
                   "--max-tokens needs an integer from 0 to 16777216 (got '1e3')");
  ExpectUsageError("generate", base + "--threads 8x",
                   "--threads needs an integer from 0 to 1024 (got '8x')");
  ExpectUsageError("generate", base + "--seed -1",
                   "--seed needs an integer from 0 to 18446744073709551615 (got '-1')");
  ExpectUsageError("generate", base + "--top-k 2.5",
                   "--top-k needs an integer from 0 to 2147483647 (got '2.5')");
  ExpectUsageError("generate", base + "--temperature 0.7x",
                   "--temperature needs a number of at least 0 (got '0.7x')");
  ExpectUsageError("generate", base + "--top-p 0",
                   "--top-p needs a number above 0 up to 1 (got '0')");
  ExpectUsageError("generate", base + "--min-p nan",
                   "--min-p needs a number from 0 to 1 (got 'nan')");
}

TEST(ZayaUsage, BenchRefusesNumbersThatAreNotWhollyNumbers) {
  const std::string base = "--model " + kNoModel + " ";
  ExpectUsageError("bench", base + "--steps 8x",
                   "--steps needs an integer from 1 to 1000000 (got '8x')");
  ExpectUsageError("bench", base + "--reps 1e3",
                   "--reps needs an integer from 1 to 1000000 (got '1e3')");
  ExpectUsageError("bench", base + "--prefill-tokens 512.5",
                   "--prefill-tokens needs an integer from 1 to 16777216 (got '512.5')");
  ExpectUsageError("bench", base + "--batches 1,8x",
                   "--batches needs an integer from 1 to 65536 or a comma-separated list of them "
                   "(got '1,8x')");
  ExpectUsageError("bench", base + "--compare-int8 5x",
                   "--compare-int8 needs an integer from 1 to 16777216 (got '5x')");
}

TEST(ZayaUsage, BenchServeRefusesConcurrencyThatIsNotWhollyNumbers) {
  ExpectUsageError("bench-serve", kNoDaemon + " --concurrency 1,4x",
                   "--concurrency needs an integer from 1 to 256 or a comma-separated list of them "
                   "(got '1,4x')");
}

}  // namespace
