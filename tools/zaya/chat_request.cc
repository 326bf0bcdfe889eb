#include "tools/zaya/chat_request.h"

#include "ipc/cli_support.h"

namespace zaya::cli {

std::optional<nlohmann::json> ChatRequest(const std::string& command, const std::string& op,
                                          const Args& args,
                                          std::initializer_list<const char*> int_flags) {
  using nlohmann::json;
  json messages = json::array();
  if (auto system = args.Get("system")) {
    messages.push_back({{"role", "system"}, {"content", *system}});
  }
  messages.push_back({{"role", "user"}, {"content", args.positional().at(0)}});
  json request = {{"op", op}, {"messages", messages}};
  for (const char* flag : int_flags) {
    if (auto v = args.Get(flag)) {
      auto n = ipc::cli::ParseIntFlag(command, flag, *v);
      if (!n) return std::nullopt;
      std::string field = flag;
      for (auto& c : field) c = c == '-' ? '_' : c;
      request[field] = *n;
    }
  }
  for (const char* flag : {"temperature", "top-p"}) {
    if (auto v = args.Get(flag)) {
      auto x = ipc::cli::ParseNumberFlag(command, flag, *v);
      if (!x) return std::nullopt;
      request[std::string(flag) == "top-p" ? "top_p" : flag] = *x;
    }
  }
  if (args.Has("no-think")) request["enable_thinking"] = false;
  return request;
}

}  // namespace zaya::cli
