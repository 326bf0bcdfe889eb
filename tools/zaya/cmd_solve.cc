// zaya solve "question": Markovian RSA test-time compute. Progress (round t/T, members finished,
// vote tally) goes to stderr, the final answer to stdout. Ctrl-C cancels the request on the daemon.
#include <cstdio>

#include "ipc/cli_support.h"
#include "tools/zaya/chat_request.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

using nlohmann::json;

int Run(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    .name = "solve",
    .summary = "solve a problem with test-time compute (Markovian RSA) on zayad",
    .usage = "zaya solve \"QUESTION\" [--mode single|parallel|rsa] [--population N] [--subset C] "
             "[--rounds T] [--tail TOKENS] [--budget TOKENS] [--temperature X] [--top-p P] "
             "[--seed S] [--deadline-ms MS] [--stream-member I] [--system TEXT] [--no-think] "
             "[--endpoint ENDPOINT] [--json]",
    .run = Run,
});

std::string Num(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// One stderr line per progress event, from the fields docs/protocol.md defines for `progress`:
// "round 1/2: members finished 3/8, tally 4:5 5:2" (keepalives are filtered by the client).
void PrintProgress(const json& e) {
  std::string line;
  auto add = [&](const std::string& part) {
    if (!line.empty()) line += ", ";
    line += part;
  };
  if (e.contains("queue_position")) add("queue position " + Num(e["queue_position"]));
  if (e.contains("round")) {
    line = "round " + Num(e["round"]) + (e.contains("rounds") ? "/" + Num(e["rounds"]) : "") + ":";
  }
  for (const char* key : {"members_finished", "finished"}) {
    if (!e.contains(key)) continue;
    std::string part = "members finished " + Num(e[key]);
    if (e.contains("population")) part += "/" + Num(e["population"]);
    line += line.empty() || line.back() == ':' ? " " + part : ", " + part;
    break;
  }
  // tally: [{"answer": "4", "votes": 3}, ...] (an {"answer": votes} object is accepted too).
  if (e.contains("tally") && !e["tally"].empty()) {
    std::string tally;
    auto entry = [&](const std::string& answer, const json& votes) {
      if (!tally.empty()) tally += " ";
      tally += answer + ":" + Num(votes);
    };
    if (e["tally"].is_array()) {
      for (const json& t : e["tally"]) {
        if (t.is_object())
          entry(t.contains("answer") ? Num(t["answer"]) : "?", t.value("votes", json(0)));
      }
    } else if (e["tally"].is_object()) {
      for (const auto& [answer, votes] : e["tally"].items()) entry(answer, votes);
    }
    if (!tally.empty()) add("tally " + tally);
  }
  if (line.empty() && e.contains("stage")) line = Num(e["stage"]);
  if (!line.empty() && line.front() == ' ') line.erase(0, 1);
  if (!line.empty()) std::fprintf(stderr, "%s\n", line.c_str());
}

int Run(const std::vector<std::string>& argv) {
  const Command& self = Registry().at("solve");
  std::string error;
  auto args =
      Args::Parse(argv,
                  {"endpoint", "mode", "population", "subset", "rounds", "tail", "budget",
                   "temperature", "top-p", "seed", "deadline-ms", "stream-member", "system"},
                  {"json", "no-think"}, &error);
  if (!args) return UsageError(self, error);
  if (args->positional().size() != 1) return UsageError(self, "needs exactly one QUESTION");
  if (auto mode = args->Get("mode")) {
    if (*mode != "single" && *mode != "parallel" && *mode != "rsa") {
      return UsageError(self, "--mode must be single, parallel or rsa");
    }
  }
  auto request = ChatRequest(
      "solve", "solve", *args,
      {"population", "subset", "rounds", "tail", "budget", "seed", "deadline-ms", "stream-member"});
  if (!request) return 2;
  if (auto mode = args->Get("mode")) (*request)["mode"] = *mode;
  const bool raw = args->Has("json");
  const bool stream = request->contains("stream_member");
  auto client =
      ipc::cli::ConnectOrReport("solve", ipc::cli::ResolveEndpoint(args->Get("endpoint")));
  if (!client) return 1;
  auto done = client->Request(
      *request,
      [&](const json& e) {
        if (raw) {
          std::printf("%s\n", e.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
          std::fflush(stdout);
        } else if (e["event"] == "progress") {
          PrintProgress(e);
        } else if (e["event"] == "delta" && stream) {
          std::fputs(e.value("text", std::string()).c_str(), stderr);
        }
      },
      ipc::cli::InterruptFlag());
  if (!done.ok()) return ipc::cli::ReportStatus("solve", done.status());
  if ((*done)["event"] == "error") return raw ? 1 : ipc::cli::ReportError("solve", *done);
  if (!raw) {
    const json& d = *done;
    std::string answer;
    if (d.contains("answer") && !d["answer"].is_null()) {
      answer = Num(d["answer"]);
    } else {
      answer = d.value("text", std::string());
    }
    std::printf("%s\n", answer.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace zaya::cli
