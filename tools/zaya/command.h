// `zaya` subcommands register themselves: each cmd_<name>.cc defines one static CommandRegistrar,
// so adding a subcommand never touches main.cc. Commands return a process exit code
// (0 ok, 1 failure reported on stderr, 2 usage error).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zaya::cli {

struct Command {
  std::string name;
  std::string summary;  // one line for `zaya --help`
  std::string usage;    // full usage text for `zaya NAME --help`
  std::function<int(const std::vector<std::string>& args)> run;
};

std::map<std::string, Command>& Registry();

struct CommandRegistrar {
  explicit CommandRegistrar(Command c);
};

// Minimal flag parser: "--name value", "--name=value" and boolean "--flag". Positional arguments
// are kept in order. Unknown flags are an error naming the flag, so typos never pass silently.
class Args {
 public:
  // `value_flags` take a value; `bool_flags` do not.
  static std::optional<Args> Parse(const std::vector<std::string>& argv,
                                   const std::vector<std::string>& value_flags,
                                   const std::vector<std::string>& bool_flags, std::string* error);

  bool Has(std::string_view flag) const;
  std::optional<std::string> Get(std::string_view flag) const;
  std::string GetOr(std::string_view flag, std::string fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string, std::less<>> values_;
  std::vector<std::string> positional_;
};

// Prints "zaya NAME: <message>" and the usage hint to stderr; returns 2.
int UsageError(const Command& c, std::string_view message);

// For a command that takes no positional arguments: the usage error (2) naming the stray ones, or
// nullopt when there are none. A stray word is never ignored, since it is usually a mistake whose
// result would look right: the second word of an unquoted --prompt, or text meant for stdin.
// `hint` (optional) says where such text belongs for this command.
std::optional<int> RefusePositionals(const Command& c, const Args& args,
                                     std::string_view hint = {});

// Numeric flag values, parsed whole and range-checked: "1e3", "8x", " 8" and "" are refused rather
// than read as 1 or 8, and a value outside the range is refused rather than wrapped or clamped (a
// seed of -1 is not 2^64-1). An absent flag gives `fallback`. A bad value gives nullopt and sets
// *error to a message naming the flag, the value and what is allowed, for UsageError, unless
// *error already holds one: several flags can be parsed before one check that names the first.
std::optional<long long> IntFlag(const Args& args, std::string_view flag, long long fallback,
                                 long long lo, long long hi, std::string* error);
// A seed: any integer 0 .. 2^64-1.
std::optional<uint64_t> SeedFlag(const Args& args, std::string_view flag, uint64_t fallback,
                                 std::string* error);
// A finite number in [lo, hi], or in (lo, hi] when `above_lo`; hi may be infinity.
std::optional<double> NumberFlag(const Args& args, std::string_view flag, double fallback,
                                 double lo, double hi, std::string* error, bool above_lo = false);
// A comma-separated list of integers in [lo, hi] ("1,8,16"); `fallback` is the list's text.
std::optional<std::vector<long long>> IntListFlag(const Args& args, std::string_view flag,
                                                  std::string_view fallback, long long lo,
                                                  long long hi, std::string* error);

}  // namespace zaya::cli
