#include "tools/zaya/command.h"

#include <algorithm>
#include <cstdio>

namespace zaya::cli {

std::map<std::string, Command>& Registry() {
  static std::map<std::string, Command> registry;
  return registry;
}

CommandRegistrar::CommandRegistrar(Command c) {
  std::string name = c.name;
  Registry().emplace(std::move(name), std::move(c));
}

std::optional<Args> Args::Parse(const std::vector<std::string>& argv,
                                const std::vector<std::string>& value_flags,
                                const std::vector<std::string>& bool_flags, std::string* error) {
  Args out;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() < 3 || a.rfind("--", 0) != 0) {
      out.positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name.resize(eq);
    }
    const bool takes_value =
        std::find(value_flags.begin(), value_flags.end(), name) != value_flags.end();
    const bool is_bool = std::find(bool_flags.begin(), bool_flags.end(), name) != bool_flags.end();
    if (!takes_value && !is_bool) {
      *error = "unknown option --" + name;
      return std::nullopt;
    }
    if (is_bool) {
      if (inline_value) {
        *error = "option --" + name + " takes no value";
        return std::nullopt;
      }
      out.values_[name] = "";
      continue;
    }
    if (inline_value) {
      out.values_[name] = *inline_value;
    } else if (i + 1 < argv.size()) {
      out.values_[name] = argv[++i];
    } else {
      *error = "option --" + name + " needs a value";
      return std::nullopt;
    }
  }
  return out;
}

bool Args::Has(std::string_view flag) const { return values_.find(flag) != values_.end(); }

std::optional<std::string> Args::Get(std::string_view flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::GetOr(std::string_view flag, std::string fallback) const {
  auto v = Get(flag);
  return v ? *v : std::move(fallback);
}

int UsageError(const Command& c, std::string_view message) {
  std::fprintf(stderr, "zaya %s: %.*s\nusage: %s\n", c.name.c_str(),
               static_cast<int>(message.size()), message.data(), c.usage.c_str());
  return 2;
}

std::optional<int> RefusePositionals(const Command& c, const Args& args, std::string_view hint) {
  if (args.positional().empty()) return std::nullopt;
  std::string message = "takes no arguments (got";
  for (const std::string& a : args.positional()) message += " '" + a + "'";
  message += ")";
  if (!hint.empty()) message += "; " + std::string(hint);
  return UsageError(c, message);
}

}  // namespace zaya::cli
