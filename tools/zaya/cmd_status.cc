// zaya status: the daemon's model, budgets and their use, queue and running requests.
#include <cstdio>

#include "ipc/cli_support.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

int PrintStatus(const nlohmann::json& done) {
  nlohmann::json body = done;
  body.erase("v");
  body.erase("id");
  body.erase("event");
  std::printf("%s\n", body.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

int Run(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    .name = "status",
    .summary = "show zayad's model, memory budgets, queue and running requests",
    .usage = "zaya status [--endpoint ENDPOINT] [--json]",
    .run = Run,
});

int Run(const std::vector<std::string>& argv) {
  std::string error;
  auto args = Args::Parse(argv, {"endpoint"}, {"json"}, &error);
  if (!args) return UsageError(Registry().at("status"), error);
  if (auto rc = RefusePositionals(Registry().at("status"), *args)) return *rc;
  return ipc::cli::RunSimpleOp("status", "status", ipc::cli::ResolveEndpoint(args->Get("endpoint")),
                               args->Has("json"), &PrintStatus);
}

}  // namespace
}  // namespace zaya::cli
