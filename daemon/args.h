// zayad's command line: `zayad [--config FILE] [--foreground] [--check-config]`.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace zaya::daemon {

inline constexpr const char* kDefaultConfigPath = "/etc/zayad/zayad.toml";

struct DaemonArgs {
  std::string config_path = kDefaultConfigPath;
  bool foreground = false;    // log to stderr (unless [log] target says journal)
  bool check_config = false;  // validate, print the effective config, exit
  bool help = false;
  bool version = false;
};

// Errors name the bad argument; the caller prints them with Usage() and exits 2.
Result<DaemonArgs> ParseDaemonArgs(const std::vector<std::string>& argv);
std::string Usage();

}  // namespace zaya::daemon
