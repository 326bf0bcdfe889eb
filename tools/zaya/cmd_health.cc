// zaya health: is the daemon up and its engine making progress? Exit 0 when healthy, 1 otherwise.
#include <cstdio>

#include "ipc/cli_support.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

int PrintHealth(const nlohmann::json& done) {
  const bool healthy = ipc::cli::HealthReplyIsHealthy(done);
  std::printf("%s (engine %s, %s, %d requests in flight)\n", healthy ? "healthy" : "unhealthy",
              done.value("engine", std::string("?")).c_str(),
              done.value("accepting", false) ? "accepting" : "not accepting",
              done.value("requests_in_flight", 0));
  return healthy ? 0 : 1;
}

int Run(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    .name = "health",
    .summary = "check that zayad is up and healthy (exit 0 when healthy)",
    .usage = "zaya health [--endpoint ENDPOINT] [--json]",
    .run = Run,
});

int Run(const std::vector<std::string>& argv) {
  std::string error;
  auto args = Args::Parse(argv, {"endpoint"}, {"json"}, &error);
  if (!args) return UsageError(Registry().at("health"), error);
  if (auto rc = RefusePositionals(Registry().at("health"), *args)) return *rc;
  return ipc::cli::RunSimpleOp("health", "health", ipc::cli::ResolveEndpoint(args->Get("endpoint")),
                               args->Has("json"), &PrintHealth, &ipc::cli::HealthReplyIsHealthy);
}

}  // namespace
}  // namespace zaya::cli
