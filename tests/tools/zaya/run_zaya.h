// Runs the real `zaya` binary of this build for the CLI tests, stdout and stderr captured apart.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

namespace zaya::testing {

struct ZayaRun {
  int rc = -1;
  std::string out, err;
};

// `zaya ARGS` with stdin from /dev/null (a command that wrongly reads stdin gets EOF instead of
// waiting) under `timeout` (one that wrongly goes on working fails with 124 instead of hanging).
// stderr goes through a file named after the test and process: ctest runs the tests of one file
// as parallel processes.
inline ZayaRun RunZaya(const std::string& args, int timeout_s = 600) {
  const std::string err_path = ::testing::TempDir() + "/zaya_" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name() +
                               "_" + std::to_string(getpid()) + ".err";
  const std::string cmd = "timeout " + std::to_string(timeout_s) + " " +
                          std::string(ZAYA_BINARY_DIR) + "/tools/zaya/zaya " + args +
                          " </dev/null 2>" + err_path;
  ZayaRun r;
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

}  // namespace zaya::testing
