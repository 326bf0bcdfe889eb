// zaya ask "question": one chat turn with `generate`, streaming the answer's text to stdout.
// Ctrl-C cancels the request on the daemon.
#include <cstdio>

#include "ipc/cli_support.h"
#include "tools/zaya/chat_request.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

using nlohmann::json;

int Run(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    .name = "ask",
    .summary = "ask zayad a question and stream the answer",
    .usage = "zaya ask \"QUESTION\" [--system TEXT] [--max-tokens N] [--temperature X] "
             "[--top-p P] [--top-k K] [--seed S] [--no-think] [--deadline-ms MS] "
             "[--endpoint ENDPOINT] [--json]",
    .run = Run,
});

int Run(const std::vector<std::string>& argv) {
  const Command& self = Registry().at("ask");
  std::string error;
  auto args = Args::Parse(
      argv,
      {"endpoint", "system", "max-tokens", "temperature", "top-p", "top-k", "seed", "deadline-ms"},
      {"json", "no-think"}, &error);
  if (!args) return UsageError(self, error);
  if (args->positional().size() != 1) return UsageError(self, "needs exactly one QUESTION");
  auto request =
      ChatRequest("ask", "generate", *args, {"max-tokens", "top-k", "seed", "deadline-ms"});
  if (!request) return 2;
  const bool raw = args->Has("json");
  auto client = ipc::cli::ConnectOrReport("ask", ipc::cli::ResolveEndpoint(args->Get("endpoint")));
  if (!client) return 1;
  bool printed = false;
  auto done = client->Request(
      *request,
      [&](const json& e) {
        if (raw) {
          std::printf("%s\n", e.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
        } else if (e["event"] == "delta") {
          std::fputs(e.value("text", std::string()).c_str(), stdout);
          printed = true;
        }
        std::fflush(stdout);
      },
      ipc::cli::InterruptFlag());
  if (!done.ok()) return ipc::cli::ReportStatus("ask", done.status());
  if ((*done)["event"] == "error") {
    if (printed) std::printf("\n");
    return raw ? 1 : ipc::cli::ReportError("ask", *done);
  }
  if (!raw) {
    // An engine that does not stream puts the whole text in `done`.
    if (!printed) std::fputs(done->value("text", std::string()).c_str(), stdout);
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace zaya::cli
