#include "tools/zaya/command.h"

#include <algorithm>
#include <charconv>
#include <cmath>
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

namespace {

// from_chars, unlike stoi/strtol, takes no leading space or '+' and reports where it stopped, so
// "the whole text is the number" is one comparison.
template <typename T>
std::optional<T> ParseWhole(std::string_view text) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// Keeps the first error, so that a command may parse all its flags before one check and name the
// first bad one.
void SetFlagValueError(std::string_view flag, std::string_view needs, std::string_view value,
                       std::string* error) {
  if (!error->empty()) return;
  *error = "--" + std::string(flag) + " needs " + std::string(needs) + " (got '" +
           std::string(value) + "')";
}

std::string IntRange(long long lo, long long hi) {
  return "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
}

std::string NumberText(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

std::optional<long long> IntInRange(std::string_view flag, std::string_view value, long long lo,
                                    long long hi, std::string* error) {
  auto v = ParseWhole<long long>(value);
  if (!v || *v < lo || *v > hi) {
    SetFlagValueError(flag, IntRange(lo, hi), value, error);
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::optional<long long> IntFlag(const Args& args, std::string_view flag, long long fallback,
                                 long long lo, long long hi, std::string* error) {
  auto value = args.Get(flag);
  if (!value) return fallback;
  return IntInRange(flag, *value, lo, hi, error);
}

std::optional<uint64_t> SeedFlag(const Args& args, std::string_view flag, uint64_t fallback,
                                 std::string* error) {
  auto value = args.Get(flag);
  if (!value) return fallback;
  auto v = ParseWhole<uint64_t>(*value);
  if (!v) {
    SetFlagValueError(flag, "an integer from 0 to " + std::to_string(UINT64_MAX), *value, error);
  }
  return v;
}

std::optional<double> NumberFlag(const Args& args, std::string_view flag, double fallback,
                                 double lo, double hi, std::string* error, bool above_lo) {
  auto value = args.Get(flag);
  if (!value) return fallback;
  auto v = ParseWhole<double>(*value);
  if (!v || !std::isfinite(*v) || (above_lo ? *v <= lo : *v < lo) || *v > hi) {
    std::string needs =
        "a number " + std::string(above_lo ? "above " : "of at least ") + NumberText(lo);
    if (std::isfinite(hi)) {
      needs = "a number " + std::string(above_lo ? "above " : "from ") + NumberText(lo) +
              (above_lo ? " up to " : " to ") + NumberText(hi);
    }
    SetFlagValueError(flag, needs, *value, error);
    return std::nullopt;
  }
  return v;
}

std::optional<std::vector<long long>> IntListFlag(const Args& args, std::string_view flag,
                                                  std::string_view fallback, long long lo,
                                                  long long hi, std::string* error) {
  const std::string list = args.GetOr(flag, std::string(fallback));
  std::vector<long long> out;
  size_t at = 0;
  while (true) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string_view item = std::string_view(list).substr(at, comma - at);
    auto v = ParseWhole<long long>(item);
    if (!v || *v < lo || *v > hi) {
      SetFlagValueError(flag, IntRange(lo, hi) + " or a comma-separated list of them", list, error);
      return std::nullopt;
    }
    out.push_back(*v);
    if (comma == list.size()) return out;
    at = comma + 1;
  }
}

}  // namespace zaya::cli
