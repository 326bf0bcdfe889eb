// The request body `zaya ask` and `zaya solve` share: one chat from the command line plus the
// sampling flags, in the protocol's field names (docs/protocol.md).
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tools/zaya/command.h"

namespace zaya::cli {

// {"op": op, "messages": [system?, user]} from --system and the one positional QUESTION, then the
// integer flags named in `int_flags` as snake_case fields ("deadline-ms" -> "deadline_ms"),
// --temperature, --top-p and --no-think (enable_thinking false). A malformed number prints
// "zaya COMMAND: ..." to stderr and returns nullopt (the command exits 2).
std::optional<nlohmann::json> ChatRequest(const std::string& command, const std::string& op,
                                          const Args& args,
                                          std::initializer_list<const char*> int_flags);

}  // namespace zaya::cli
