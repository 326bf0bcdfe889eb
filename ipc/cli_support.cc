#include "ipc/cli_support.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>

namespace zaya::ipc::cli {
namespace {

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted = true; }

}  // namespace

std::string ResolveEndpoint(const std::optional<std::string>& flag) {
  if (flag && !flag->empty()) return *flag;
  return DefaultEndpoint();
}

std::unique_ptr<Client> ConnectOrReport(const std::string& command, const std::string& endpoint) {
  auto client = Client::Connect(endpoint);
  if (!client.ok()) {
    std::fprintf(stderr, "zaya %s: %s\n", command.c_str(), client.status().message().c_str());
    return nullptr;
  }
  return std::move(*client);
}

const std::atomic<bool>* InterruptFlag() {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = &OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    return true;
  }();
  (void)installed;
  return &g_interrupted;
}

int ReportError(const std::string& command, const nlohmann::json& e) {
  const std::string code = e.value("code", std::string("error"));
  const std::string message = e.value("message", std::string("(no message)"));
  std::fprintf(stderr, "zaya %s: %s: %s\n", command.c_str(), code.c_str(), message.c_str());
  return 1;
}

int ReportStatus(const std::string& command, const Status& status) {
  std::fprintf(stderr, "zaya %s: %s\n", command.c_str(), status.message().c_str());
  return 1;
}

bool HealthReplyIsHealthy(const nlohmann::json& done) { return done.value("healthy", false); }

int RunSimpleOp(const std::string& command, const std::string& op, const std::string& endpoint,
                bool json_output, int (*print)(const nlohmann::json& done),
                bool (*ok)(const nlohmann::json& done)) {
  auto client = ConnectOrReport(command, endpoint);
  if (!client) return 1;
  auto done = client->Request({{"op", op}}, {}, InterruptFlag());
  if (!done.ok()) return ReportStatus(command, done.status());
  if (json_output) {
    std::printf("%s\n",
                done->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return (*done)["event"] == "done" && (ok == nullptr || ok(*done)) ? 0 : 1;
  }
  if ((*done)["event"] != "done") return ReportError(command, *done);
  return print(*done);
}

std::optional<long long> ParseIntFlag(const std::string& command, const std::string& flag,
                                      const std::string& value) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0) {
    std::fprintf(stderr, "zaya %s: --%s needs an integer (got '%s')\n", command.c_str(),
                 flag.c_str(), value.c_str());
    return std::nullopt;
  }
  return v;
}

std::optional<double> ParseNumberFlag(const std::string& command, const std::string& flag,
                                      const std::string& value) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0') {
    std::fprintf(stderr, "zaya %s: --%s needs a number (got '%s')\n", command.c_str(), flag.c_str(),
                 value.c_str());
    return std::nullopt;
  }
  return v;
}

}  // namespace zaya::ipc::cli
