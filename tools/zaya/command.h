// `zaya` subcommands register themselves: each cmd_<name>.cc defines one static CommandRegistrar,
// so adding a subcommand never touches main.cc. Commands return a process exit code
// (0 ok, 1 failure reported on stderr, 2 usage error).
#pragma once

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

}  // namespace zaya::cli
