// zaya metrics: the daemon's Prometheus text exposition.
#include <cstdio>

#include "ipc/cli_support.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

int PrintMetrics(const nlohmann::json& done) {
  std::fputs(done.value("text", std::string()).c_str(), stdout);
  return 0;
}

int Run(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    .name = "metrics",
    .summary = "print zayad's metrics (Prometheus text format)",
    .usage = "zaya metrics [--endpoint ENDPOINT] [--json]",
    .run = Run,
});

int Run(const std::vector<std::string>& argv) {
  std::string error;
  auto args = Args::Parse(argv, {"endpoint"}, {"json"}, &error);
  if (!args) return UsageError(Registry().at("metrics"), error);
  if (auto rc = RefusePositionals(Registry().at("metrics"), *args)) return *rc;
  return ipc::cli::RunSimpleOp("metrics", "metrics",
                               ipc::cli::ResolveEndpoint(args->Get("endpoint")), args->Has("json"),
                               &PrintMetrics);
}

}  // namespace
}  // namespace zaya::cli
