// zaya: the command-line client and developer tool. Subcommands live in cmd_*.cc.
#include <cstdio>
#include <string>
#include <vector>

#include "tools/zaya/command.h"

namespace {

void PrintHelp() {
  std::printf("usage: zaya COMMAND [OPTIONS]\n\ncommands:\n");
  for (const auto& [name, c] : zaya::cli::Registry()) {
    std::printf("  %-16s %s\n", name.c_str(), c.summary.c_str());
  }
  std::printf("\n'zaya COMMAND --help' shows a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    PrintHelp();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  auto& registry = zaya::cli::Registry();
  auto it = registry.find(name);
  if (it == registry.end()) {
    std::fprintf(stderr, "zaya: unknown command '%s'; run 'zaya --help' for the list\n",
                 name.c_str());
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n", it->second.usage.c_str());
      return 0;
    }
  }
  try {
    return it->second.run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zaya %s: %s\n", name.c_str(), e.what());
    return 1;
  }
}
