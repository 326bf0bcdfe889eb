// Shared plumbing of the `zaya` client subcommands (ask, solve, status, health, metrics): endpoint
// selection, connecting with a clear message, Ctrl-C -> cancel, and printing events.
//
// Thread safety: meant for the CLI's main thread; InterruptFlag() is set from a signal handler.
#pragma once

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ipc/client.h"

namespace zaya::ipc::cli {

// --endpoint, else $ZAYA_ENDPOINT, else ipc:///run/zayad/zayad.sock.
std::string ResolveEndpoint(const std::optional<std::string>& flag);

// Connects or prints "zaya CMD: no zayad at ...: is it running? systemctl status zayad" to stderr.
std::unique_ptr<Client> ConnectOrReport(const std::string& command, const std::string& endpoint);

// Installs a SIGINT/SIGTERM handler (once) that sets the returned flag, so Request() sends
// `cancel`.
const std::atomic<bool>* InterruptFlag();

// Prints a terminal `error` event (or a transport Status) as "zaya CMD: code: message"; returns 1.
int ReportError(const std::string& command, const nlohmann::json& error_event);
int ReportStatus(const std::string& command, const Status& status);

// Sends {"op": op} and prints the `done` event: raw JSON with --json, else `print(done)`. The exit
// status is print's; with --json it is 0 when the op answered `done` and, if given, `ok(done)`
// holds (so that `zaya health --json` fails on an unhealthy daemon as plain `zaya health` does).
int RunSimpleOp(const std::string& command, const std::string& op, const std::string& endpoint,
                bool json_output, int (*print)(const nlohmann::json& done),
                bool (*ok)(const nlohmann::json& done) = nullptr);

// Whether a `health` reply says the daemon is healthy (and accepting work).
bool HealthReplyIsHealthy(const nlohmann::json& done);

// Parses an integer/number flag value; prints a usage-style error and returns nullopt when invalid.
std::optional<long long> ParseIntFlag(const std::string& command, const std::string& flag,
                                      const std::string& value);
std::optional<double> ParseNumberFlag(const std::string& command, const std::string& flag,
                                      const std::string& value);

}  // namespace zaya::ipc::cli
