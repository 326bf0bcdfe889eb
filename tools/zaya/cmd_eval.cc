// zaya eval: accuracy of the running daemon's model on held-out problems of its training task
// (tools/zaya/eval_task.h), per test-time-compute mode. Several requests stay in flight on one
// connection so the daemon batches them; progress goes to stderr, the table (or --json) to stdout.
// Exit codes: 0 every request answered, 1 daemon unreachable or some request failed (the report
// is still printed), 2 usage error, 130 interrupted (the report covers what finished).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ipc/cli_support.h"
#include "ipc/protocol.h"
#include "tools/zaya/command.h"
#include "tools/zaya/eval_task.h"

namespace zaya::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

int Run(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    .name = "eval",
    .summary = "measure the daemon's accuracy on held-out problems, per mode (single/parallel/rsa)",
    .usage =
        "zaya eval [--problems N] [--seed S] [--n-lo N] [--n-hi N] [--mode single,parallel,rsa] "
        "[--concurrency K] [--temperature X] [--top-p P] [--max-tokens N] [--population N] "
        "[--subset C] [--rounds T] [--tail TOKENS] [--budget TOKENS] [--sample-seed S] "
        "[--deadline-ms MS] [--endpoint ENDPOINT] [--json] [--details]\n"
        "  Problems: x <- (x*a+b) mod 100 repeated n times (the zaya-tiny-reasoner task); problem "
        "i\n"
        "  of --seed S is fixed (defaults: 100 problems, seed 0, n 6..10).\n"
        "  Modes: single = one `generate` trace with the chat template, cut at --max-tokens\n"
        "  (default: --budget if given, else 256); parallel = `solve` N traces + majority vote;\n"
        "  rsa = `solve` Markovian RSA. --population/--budget apply to parallel and rsa,\n"
        "  --subset/--rounds/--tail to rsa; unset ones take the daemon's [rsa] defaults.\n"
        "  Sampling: temperature 0.8 unless --temperature; problem i is sampled with a seed "
        "derived\n"
        "  from (--sample-seed, i), the same in every mode.\n"
        "  --concurrency requests in flight (default 4, at most the daemon's\n"
        "  max_requests_per_client); --details adds per-problem records to --json.",
    .run = Run,
});

constexpr const char* kCommand = "eval";
constexpr int kMaxBusyRetries = 50;
constexpr auto kSilenceTimeout = std::chrono::seconds(60);

struct Settings {
  int problems = 100;
  uint64_t seed = 0;
  // tools/train/eval.py's default range, so the two evals are comparable out of the box.
  int n_lo = 6;
  int n_hi = 10;
  std::vector<std::string> modes = {"single", "parallel", "rsa"};
  int concurrency = 4;
  double temperature = 0.8;
  std::optional<double> top_p;
  std::optional<long long> max_tokens;
  std::map<std::string, long long> rsa;  // population/subset/rounds/tail/budget overrides
  uint64_t sample_seed = 0;
  std::optional<long long> deadline_ms;
  bool json_output = false;
  bool details = false;
  std::string endpoint;
};

// Per-mode tallies. problems == correct + wrong + unanswered + errors.
struct ModeResult {
  std::string mode;
  json params = json::object();  // what was sent, merged with the daemon's resolved `params`
  int64_t problems = 0;
  int64_t correct = 0;
  int64_t wrong = 0;
  int64_t unanswered = 0;
  int64_t errors = 0;
  int64_t tokens = 0;
  int64_t partial = 0;
  int64_t member_correct = 0;  // solve modes: final-population members with the right answer
  int64_t member_total = 0;
  double latency_s = 0;  // sum over answered-or-failed requests
  double wall_s = 0;
  std::map<std::string, int64_t> error_codes;
  std::string first_error;
  json details = json::array();
};

// ---------------------------------------------------------------------------------------------
// Flags

// Fills `s` from the flags; returns an error message for a usage error.
std::optional<std::string> ParseSettings(const Args& args, Settings* s) {
  // command.h's IntFlag / SeedFlag / NumberFlag: whole values, range-checked, one message style.
  std::string error;
  auto int_flag = [&](const char* flag, long long lo, long long hi, auto* out) -> bool {
    if (!args.Has(flag)) return true;
    auto n = IntFlag(args, flag, 0, lo, hi, &error);
    if (n) *out = static_cast<std::remove_reference_t<decltype(*out)>>(*n);
    return n.has_value();
  };
  if (!int_flag("problems", 1, 1000000, &s->problems)) return error;
  if (!int_flag("n-lo", 0, eval::kMaxIterateSteps, &s->n_lo)) return error;
  if (!int_flag("n-hi", 0, eval::kMaxIterateSteps, &s->n_hi)) return error;
  if (args.Has("n-lo") && !args.Has("n-hi")) s->n_hi = std::max(s->n_hi, s->n_lo);
  if (args.Has("n-hi") && !args.Has("n-lo")) s->n_lo = std::min(s->n_lo, s->n_hi);
  if (s->n_lo > s->n_hi) {
    return "--n-lo (" + std::to_string(s->n_lo) + ") must not exceed --n-hi (" +
           std::to_string(s->n_hi) + ")";
  }
  if (!int_flag("concurrency", 1, 1024, &s->concurrency)) return error;
  for (const char* flag : {"seed", "sample-seed"}) {
    uint64_t& out = std::string(flag) == "seed" ? s->seed : s->sample_seed;
    auto n = SeedFlag(args, flag, out, &error);
    if (!n) return error;
    out = *n;
  }
  if (auto v = args.Get("mode")) {
    s->modes.clear();
    for (const std::string& m : eval::SplitCommas(*v)) {
      if (m != "single" && m != "parallel" && m != "rsa") {
        return "--mode takes single, parallel and rsa, comma-separated (got '" + m + "')";
      }
      if (std::find(s->modes.begin(), s->modes.end(), m) != s->modes.end()) {
        return "--mode lists '" + m + "' twice";
      }
      s->modes.push_back(m);
    }
  }
  // The daemon's limit (protocol.cc): above it every problem would come back invalid_argument.
  if (auto x = NumberFlag(args, "temperature", s->temperature, 0, kMaxTemperature, &error)) {
    s->temperature = *x;
  } else {
    return error;
  }
  if (args.Has("top-p")) {
    auto x = NumberFlag(args, "top-p", 1.0, 0, 1, &error, /*above_lo=*/true);
    if (!x) return error;
    s->top_p = *x;
  }
  if (!int_flag("max-tokens", 1, 1ll << 31, &s->max_tokens)) return error;
  for (const char* flag : {"population", "subset", "budget", "tail"}) {
    std::optional<long long> n;
    if (!int_flag(flag, 1, 1ll << 31, &n)) return error;
    if (n) s->rsa[flag] = *n;
  }
  {
    std::optional<long long> n;
    if (!int_flag("rounds", 0, 1ll << 31, &n)) return error;
    if (n) s->rsa["rounds"] = *n;
  }
  if (!s->max_tokens && s->rsa.count("budget")) s->max_tokens = s->rsa["budget"];
  if (!int_flag("deadline-ms", 1, 86400000, &s->deadline_ms)) return error;
  s->json_output = args.Has("json");
  s->details = args.Has("details");
  if (s->details && !s->json_output) return "--details needs --json";
  s->endpoint = ipc::cli::ResolveEndpoint(args.Get("endpoint"));
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Requests

json BuildRequest(const std::string& mode, const Settings& s, const eval::IterateProblem& p) {
  json request = {
      {"messages", json::array({{{"role", "user"}, {"content", p.question}}})},
      {"temperature", s.temperature},
      {"seed", eval::RequestSeed(s.sample_seed, p.index)},
  };
  if (s.top_p) request["top_p"] = *s.top_p;
  if (s.deadline_ms) request["deadline_ms"] = *s.deadline_ms;
  if (mode == "single") {
    request["op"] = "generate";
    request["max_tokens"] = s.max_tokens.value_or(256);
    return request;
  }
  request["op"] = "solve";
  request["mode"] = mode;
  // Parallel is T = 0: subset/rounds/tail would contradict the mode (docs/rsa.md).
  const std::vector<std::string> keys =
      mode == "rsa" ? std::vector<std::string>{"population", "subset", "rounds", "tail", "budget"}
                    : std::vector<std::string>{"population", "budget"};
  for (const std::string& key : keys) {
    if (auto it = s.rsa.find(key); it != s.rsa.end()) request[key] = it->second;
  }
  return request;
}

int64_t CompletionTokens(const json& done) {
  auto usage = done.find("usage");
  if (usage == done.end() || !usage->is_object()) return 0;
  auto tokens = usage->find("completion_tokens");
  return tokens != usage->end() && tokens->is_number_integer() ? tokens->get<int64_t>() : 0;
}

// Scores one terminal event into `r`.
void Record(const std::string& mode, const eval::IterateProblem& p, const json& event,
            double latency_s, bool details, ModeResult* r) {
  ++r->problems;
  r->latency_s += latency_s;
  json detail = {{"index", p.index}, {"truth", p.answer}, {"latency_s", latency_s}};
  if (event.value("event", std::string()) != "done") {
    ++r->errors;
    const std::string code = event.value("code", std::string("error"));
    ++r->error_codes[code];
    if (r->first_error.empty()) {
      r->first_error = code + ": " + event.value("message", std::string("(no message)"));
    }
    detail["error"] = code;
    if (details) r->details.push_back(std::move(detail));
    return;
  }
  std::optional<std::string> answer;
  if (mode == "single") {
    answer = eval::ExtractFinalAnswer(event.value("text", std::string()));
  } else {
    auto a = event.find("answer");
    if (a != event.end() && a->is_string()) answer = a->get<std::string>();
    if (auto c = event.find("candidates"); c != event.end() && c->is_array()) {
      for (const json& member : *c) {
        ++r->member_total;
        auto ma = member.is_object() ? member.find("answer") : member.end();
        if (ma != member.end() && ma->is_string() &&
            eval::AnswerMatches(ma->get<std::string>(), p.answer)) {
          ++r->member_correct;
        }
      }
    }
    if (event.value("partial", false)) ++r->partial;
    if (auto params = event.find("params"); params != event.end() && params->is_object()) {
      r->params.update(*params);
      r->params.erase("seed");  // one per problem (RequestSeed), not a setting of the mode
    }
  }
  const int64_t tokens = CompletionTokens(event);
  r->tokens += tokens;
  if (!answer) {
    ++r->unanswered;
  } else if (eval::AnswerMatches(answer, p.answer)) {
    ++r->correct;
  } else {
    ++r->wrong;
  }
  detail["answer"] = answer ? json(*answer) : json();
  detail["correct"] = eval::AnswerMatches(answer, p.answer);
  detail["tokens"] = tokens;
  detail["text"] = event.value("text", std::string());  // solve: a winning trace, if any
  if (details) r->details.push_back(std::move(detail));
}

// Progress on stderr: rewritten in place on a terminal, else a line every few seconds.
class Progress {
 public:
  Progress() : tty_(isatty(STDERR_FILENO) == 1) {}
  void Update(const ModeResult& r, int total, bool final) {
    const auto now = Clock::now();
    if (!final && !tty_ && now - last_ < std::chrono::seconds(5)) return;
    if (!final && tty_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double acc =
        r.problems > 0 ? 100.0 * static_cast<double>(r.correct) / static_cast<double>(r.problems)
                       : 0.0;
    std::fprintf(stderr, "%szaya eval: %s %lld/%d, accuracy %.1f%%, errors %lld%s",
                 tty_ ? "\r" : "", r.mode.c_str(), static_cast<long long>(r.problems), total, acc,
                 static_cast<long long>(r.errors), tty_ && !final ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  bool tty_;
  Clock::time_point last_{};
};

struct InFlight {
  int problem = 0;
  int attempts = 0;
  Clock::time_point sent;
};

struct Retry {
  int problem = 0;
  int attempts = 0;
  Clock::time_point not_before;
};

enum class RunEnd { kDone, kInterrupted, kAborted };

// Runs every problem in `mode`, keeping up to `concurrency` requests in flight on `client`.
// A transport failure is returned as a Status; a request setting the daemon refuses for every
// problem (bad_request / invalid_argument) aborts the run with `*abort_message`.
Result<RunEnd> RunMode(ipc::Client& client, const std::string& mode, const Settings& s,
                       const std::vector<eval::IterateProblem>& problems, ModeResult* r,
                       std::string* abort_message) {
  const std::atomic<bool>* interrupt = ipc::cli::InterruptFlag();
  Progress progress;
  std::map<std::string, InFlight> in_flight;
  std::deque<Retry> retries;
  int next = 0;
  bool stopping = false;  // interrupted or aborted: cancel what runs, send nothing new
  RunEnd end = RunEnd::kDone;
  auto last_event = Clock::now();
  const auto start = Clock::now();
  r->mode = mode;
  {
    json sent = BuildRequest(mode, s, problems[0]);
    for (const char* key : {"messages", "seed", "op"}) sent.erase(key);
    r->params = sent;
  }

  auto send = [&](int problem, int attempts) -> Status {
    json request = BuildRequest(mode, s, problems[problem]);
    const std::string id = client.NextId();
    request["id"] = id;
    ZAYA_RETURN_IF_ERROR(client.Send(request));
    in_flight[id] = {problem, attempts, Clock::now()};
    return Status::Ok();
  };
  auto stop = [&](RunEnd why) -> Status {
    if (stopping) return Status::Ok();
    stopping = true;
    end = why;
    for (const auto& [id, f] : in_flight) ZAYA_RETURN_IF_ERROR(client.Cancel(id));
    return Status::Ok();
  };

  while (true) {
    if (*interrupt && !stopping) ZAYA_RETURN_IF_ERROR(stop(RunEnd::kInterrupted));
    if (!stopping) {
      const auto now = Clock::now();
      while (static_cast<int>(in_flight.size()) < s.concurrency) {
        if (!retries.empty() && retries.front().not_before <= now) {
          Retry retry = retries.front();
          retries.pop_front();
          ZAYA_RETURN_IF_ERROR(send(retry.problem, retry.attempts));
        } else if (next < static_cast<int>(problems.size())) {
          ZAYA_RETURN_IF_ERROR(send(next++, 0));
        } else {
          break;
        }
      }
    }
    if (in_flight.empty() && (stopping || (retries.empty() && next >= s.problems))) break;

    auto event = client.Receive(std::chrono::milliseconds(100));
    if (!event.ok()) {
      if (event.status().code() != StatusCode::kDeadlineExceeded) return event.status();
      if (!in_flight.empty() && Clock::now() - last_event > kSilenceTimeout) {
        return Status(StatusCode::kDeadlineExceeded,
                      "zayad at " + client.endpoint() + " sent nothing for " +
                          std::to_string(kSilenceTimeout.count()) +
                          " s; is it running? systemctl status zayad");
      }
      continue;
    }
    last_event = Clock::now();
    const json& e = *event;
    auto id_it = e.find("id");
    if (id_it == e.end() || !id_it->is_string()) continue;
    auto it = in_flight.find(id_it->get<std::string>());
    if (it == in_flight.end()) continue;  // e.g. the `done` of a cancel
    if (!ipc::IsTerminalEvent(e)) continue;
    const InFlight f = it->second;
    in_flight.erase(it);
    const std::string code = e.value("code", std::string());
    if (stopping && code == "cancelled") continue;  // we cancelled it: not a result
    if (code == "busy" && f.attempts < kMaxBusyRetries && !stopping) {
      // Queue full (other clients): retry with a growing pause instead of counting an error.
      const auto pause = std::chrono::milliseconds(50 * std::min(f.attempts + 1, 20));
      retries.push_back({f.problem, f.attempts + 1, Clock::now() + pause});
      continue;
    }
    const double latency = std::chrono::duration<double>(Clock::now() - f.sent).count();
    Record(mode, problems[f.problem], e, latency, s.details, r);
    progress.Update(*r, s.problems, false);
    const bool answered_before = r->problems > r->errors;
    if (code == "bad_request" || code == "invalid_argument" || code == "unsupported_version" ||
        (!answered_before && (code == "out_of_range" || code == "over_budget"))) {
      // The same settings go with every problem and the questions differ by a few tokens, so
      // every request would fail the same way.
      *abort_message = mode + ": " + code + ": " + e.value("message", std::string());
      ZAYA_RETURN_IF_ERROR(stop(RunEnd::kAborted));
    }
  }
  r->wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (end != RunEnd::kAborted) progress.Update(*r, s.problems, true);
  return end;
}

// ---------------------------------------------------------------------------------------------
// Report

std::string Label(const ModeResult& r) {
  if (r.mode == "single") {
    return "single (max " + r.params.value("max_tokens", json("?")).dump() + " tokens)";
  }
  auto p = [&](const char* key) {
    return r.params.contains(key) ? r.params[key].dump() : std::string("?");
  };
  if (r.mode == "parallel") return "parallel (N " + p("population") + ", beta " + p("budget") + ")";
  return "rsa (N " + p("population") + ", C " + p("subset") + ", T " + p("rounds") + ", tau " +
         p("tail") + ", beta " + p("budget") + ")";
}

double PerProblem(double total, int64_t problems) {
  return problems > 0 ? total / static_cast<double>(problems) : 0.0;
}

json ModeJson(const ModeResult& r) {
  const eval::Interval ci = eval::Wilson(r.correct, r.problems);
  json out = {{"mode", r.mode},
              {"params", r.params},
              {"problems", r.problems},
              {"correct", r.correct},
              {"wrong", r.wrong},
              {"unanswered", r.unanswered},
              {"errors", r.errors},
              {"accuracy", ci.estimate},
              {"ci95", {ci.lo, ci.hi}},
              {"tokens_per_problem", PerProblem(static_cast<double>(r.tokens), r.problems)},
              {"tokens_total", r.tokens},
              {"wall_s", r.wall_s},
              {"wall_s_per_problem", PerProblem(r.wall_s, r.problems)},
              {"latency_s_mean", PerProblem(r.latency_s, r.problems)}};
  if (r.mode != "single") {
    const eval::Interval m = eval::Wilson(r.member_correct, r.member_total);
    out["member_accuracy"] = {{"correct", r.member_correct},
                              {"members", r.member_total},
                              {"accuracy", m.estimate},
                              {"ci95", {m.lo, m.hi}}};
    out["partial"] = r.partial;
  }
  if (r.errors > 0) {
    out["error_codes"] = r.error_codes;
    out["first_error"] = r.first_error;
  }
  if (!r.details.empty()) out["details"] = r.details;
  return out;
}

void PrintTable(const Settings& s, const json& model, const std::vector<ModeResult>& results) {
  std::printf(
      "zaya eval: %d problems (seed %llu, n %d..%d), temperature %g, sample seed %llu, "
      "concurrency %d\n",
      s.problems, static_cast<unsigned long long>(s.seed), s.n_lo, s.n_hi, s.temperature,
      static_cast<unsigned long long>(s.sample_seed), s.concurrency);
  if (model.is_object() && model.contains("path")) {
    std::printf("model: %s\n", model["path"].dump().c_str());
  }
  std::vector<std::string> labels;
  size_t width = 4;
  for (const ModeResult& r : results) {
    labels.push_back(Label(r));
    width = std::max(width, labels.back().size());
  }
  std::printf("%-*s  %9s  %8s  %14s  %10s  %6s  %14s  %12s  %10s  %10s\n", static_cast<int>(width),
              "mode", "correct", "accuracy", "95% interval", "unanswered", "errors",
              "tokens/problem", "wall/problem", "latency", "total wall");
  for (size_t i = 0; i < results.size(); ++i) {
    const ModeResult& r = results[i];
    const eval::Interval ci = eval::Wilson(r.correct, r.problems);
    const std::string correct = std::to_string(r.correct) + "/" + std::to_string(r.problems);
    char interval[32];
    std::snprintf(interval, sizeof interval, "[%.1f, %.1f]", 100 * ci.lo, 100 * ci.hi);
    std::printf("%-*s  %9s  %7.1f%%  %14s  %10lld  %6lld  %14.1f  %10.3f s  %8.3f s  %8.1f s\n",
                static_cast<int>(width), labels[i].c_str(), correct.c_str(), 100 * ci.estimate,
                interval, static_cast<long long>(r.unanswered), static_cast<long long>(r.errors),
                PerProblem(static_cast<double>(r.tokens), r.problems),
                PerProblem(r.wall_s, r.problems), PerProblem(r.latency_s, r.problems), r.wall_s);
  }
  for (const ModeResult& r : results) {
    if (r.mode == "single" || r.member_total == 0) continue;
    const eval::Interval m = eval::Wilson(r.member_correct, r.member_total);
    std::printf("%s: final-population members correct %lld/%lld (%.1f%% [%.1f, %.1f])\n",
                r.mode.c_str(), static_cast<long long>(r.member_correct),
                static_cast<long long>(r.member_total), 100 * m.estimate, 100 * m.lo, 100 * m.hi);
  }
}

int Run(const std::vector<std::string>& argv) {
  const Command& self = Registry().at(kCommand);
  std::string error;
  auto args = Args::Parse(argv,
                          {"problems", "seed", "n-lo", "n-hi", "mode", "concurrency", "temperature",
                           "top-p", "max-tokens", "population", "subset", "rounds", "tail",
                           "budget", "sample-seed", "deadline-ms", "endpoint"},
                          {"json", "details"}, &error);
  if (!args) return UsageError(self, error);
  if (auto rc = RefusePositionals(self, *args)) return *rc;
  Settings s;
  if (auto usage = ParseSettings(*args, &s)) return UsageError(self, *usage);

  auto client = ipc::cli::ConnectOrReport(kCommand, s.endpoint);
  if (!client) return 1;
  auto hello = client->Request({{"op", "hello"}}, {}, ipc::cli::InterruptFlag());
  if (!hello.ok()) return ipc::cli::ReportStatus(kCommand, hello.status());
  if ((*hello)["event"] != "done") return ipc::cli::ReportError(kCommand, *hello);
  const json limits = hello->value("limits", json::object());
  if (auto m = limits.find("max_requests_per_client");
      m != limits.end() && m->is_number_integer() && m->get<int>() >= 1 &&
      s.concurrency > m->get<int>()) {
    std::fprintf(stderr,
                 "zaya eval: --concurrency %d is over the daemon's max_requests_per_client; "
                 "using %d\n",
                 s.concurrency, m->get<int>());
    s.concurrency = m->get<int>();
  }

  const auto problems = eval::MakeIterateProblems(s.seed, s.problems, s.n_lo, s.n_hi);
  std::vector<ModeResult> results;
  bool interrupted = false;
  for (const std::string& mode : s.modes) {
    ModeResult r;
    std::string abort_message;
    auto end = RunMode(*client, mode, s, problems, &r, &abort_message);
    if (!end.ok()) return ipc::cli::ReportStatus(kCommand, end.status());
    if (*end == RunEnd::kAborted) {
      std::fprintf(stderr, "zaya eval: %s\n", abort_message.c_str());
      return 1;
    }
    results.push_back(std::move(r));
    if (*end == RunEnd::kInterrupted) {
      interrupted = true;
      break;
    }
  }

  const json model = hello->value("model", json());
  if (s.json_output) {
    json out = {{"problems", s.problems},
                {"seed", s.seed},
                {"n_range", {s.n_lo, s.n_hi}},
                {"task", "iterate"},
                {"temperature", s.temperature},
                {"sample_seed", s.sample_seed},
                {"concurrency", s.concurrency},
                {"endpoint", s.endpoint},
                {"model", model},
                {"interrupted", interrupted},
                {"modes", json::array()}};
    for (const ModeResult& r : results) out["modes"].push_back(ModeJson(r));
    std::printf("%s\n", out.dump(2, ' ', false, json::error_handler_t::replace).c_str());
  } else {
    PrintTable(s, model, results);
  }
  std::fflush(stdout);
  int64_t errors = 0;
  for (const ModeResult& r : results) {
    errors += r.errors;
    if (r.errors > 0) {
      std::fprintf(stderr, "zaya eval: %s: %lld of %lld requests failed; first: %s\n",
                   r.mode.c_str(), static_cast<long long>(r.errors),
                   static_cast<long long>(r.problems), r.first_error.c_str());
    }
  }
  if (interrupted) {
    std::fprintf(stderr, "zaya eval: interrupted; the report covers the requests that finished\n");
    return 130;
  }
  return errors > 0 ? 1 : 0;
}

}  // namespace
}  // namespace zaya::cli
