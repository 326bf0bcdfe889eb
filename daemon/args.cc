#include "daemon/args.h"

namespace zaya::daemon {

std::string Usage() {
  return "usage: zayad [--config FILE] [--foreground] [--check-config]\n"
         "  --config FILE    configuration file (default " +
         std::string(kDefaultConfigPath) +
         ")\n"
         "  --foreground     log to stderr with <N> priority prefixes (for a terminal)\n"
         "  --check-config   validate FILE, print the effective configuration and exit\n"
         "  --version        print the version and exit\n";
}

Result<DaemonArgs> ParseDaemonArgs(const std::vector<std::string>& argv) {
  DaemonArgs out;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--config" || a == "-c") {
      if (i + 1 >= argv.size()) return InvalidArgument(a + " needs a FILE");
      out.config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      out.config_path = a.substr(9);
    } else if (a == "--foreground" || a == "-f") {
      out.foreground = true;
    } else if (a == "--check-config") {
      out.check_config = true;
    } else if (a == "--help" || a == "-h") {
      out.help = true;
    } else if (a == "--version") {
      out.version = true;
    } else {
      return InvalidArgument("unknown argument '" + a + "'");
    }
  }
  if (out.config_path.empty()) return InvalidArgument("--config needs a non-empty FILE");
  return out;
}

}  // namespace zaya::daemon
