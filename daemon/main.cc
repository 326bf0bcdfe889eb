// zayad entry point: argument handling and --check-config; the daemon itself is in daemon.cc.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "config/config.h"
#include "daemon/args.h"
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  using namespace zaya::daemon;
  auto args = ParseDaemonArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.ok()) {
    std::fprintf(stderr, "zayad: %s\n%s", args.status().message().c_str(), Usage().c_str());
    return 2;
  }
  if (args->help) {
    std::printf("%s", Usage().c_str());
    return 0;
  }
  if (args->version) {
    std::printf("zayad %s\n", ZAYA_VERSION);
    return 0;
  }
  if (args->check_config) {
    auto config = zaya::LoadConfig(args->config_path);
    if (!config.ok()) {
      std::fprintf(stderr, "%s\n", config.status().message().c_str());
      return 1;
    }
    std::printf("%s", zaya::FormatConfig(*config).c_str());
    return 0;
  }
  try {
    return RunDaemon(*args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "<2>zayad: fatal: %s\n", e.what());
    return 1;
  }
}
