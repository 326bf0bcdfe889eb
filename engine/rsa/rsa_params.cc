#include "engine/rsa/rsa_params.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace zaya {
namespace {

Status CheckRange(const char* field, int value, int lo, int hi, const char* limit_name) {
  if (value < lo || value > hi) {
    return InvalidArgument(std::string(field) + " = " + std::to_string(value) +
                           " is out of range; allowed " + std::to_string(lo) + ".." +
                           std::to_string(hi) + (limit_name[0] ? " (" : "") + limit_name +
                           (limit_name[0] ? ")" : ""));
  }
  return Status::Ok();
}

}  // namespace

std::string_view RsaModeName(RsaMode mode) {
  switch (mode) {
    case RsaMode::kSingle:
      return "single";
    case RsaMode::kParallel:
      return "parallel";
    case RsaMode::kRsa:
      return "rsa";
  }
  return "rsa";
}

Result<RsaParams> ResolveRsaParams(const SolveParams& req, const RsaConfig& cfg,
                                   uint64_t fallback_seed) {
  RsaParams p;
  const std::string mode = req.mode.value_or(cfg.mode);
  if (mode == "single") {
    p.mode = RsaMode::kSingle;
  } else if (mode == "parallel") {
    p.mode = RsaMode::kParallel;
  } else if (mode == "rsa") {
    p.mode = RsaMode::kRsa;
  } else {
    return InvalidArgument("mode = \"" + mode + "\" is unknown; use \"single\", \"parallel\" or "
                           "\"rsa\"");
  }

  p.population = req.population.value_or(cfg.population);
  p.rounds = req.rounds.value_or(cfg.rounds);
  p.subset = req.subset.value_or(cfg.subset);
  p.tail = req.tail.value_or(cfg.tail);
  p.budget = req.budget.value_or(cfg.budget);
  p.temperature = req.temperature.value_or(cfg.temperature);
  p.top_p = req.top_p.value_or(cfg.top_p);
  p.seed = req.seed.value_or(fallback_seed);

  if (p.mode == RsaMode::kSingle) {
    if (req.population && *req.population != 1) {
      return InvalidArgument("population = " + std::to_string(*req.population) +
                             " contradicts mode = \"single\" (one trace); use mode \"parallel\" "
                             "or \"rsa\"");
    }
    p.population = 1;
  }
  if (p.mode != RsaMode::kRsa) {
    if (req.rounds && *req.rounds != 0) {
      return InvalidArgument("rounds = " + std::to_string(*req.rounds) + " contradicts mode = \"" +
                             mode + "\" (no aggregation rounds); use mode \"rsa\"");
    }
    p.rounds = 0;
  }

  ZAYA_RETURN_IF_ERROR(
      CheckRange("population", p.population, 1, cfg.max_population, "rsa.max_population"));
  ZAYA_RETURN_IF_ERROR(CheckRange("rounds", p.rounds, 0, cfg.max_rounds, "rsa.max_rounds"));
  ZAYA_RETURN_IF_ERROR(CheckRange("budget", p.budget, 1, cfg.max_budget, "rsa.max_budget"));
  if (p.rounds == 0) {
    p.subset = 0;
    p.tail = std::clamp(p.tail, 0, p.budget);
  } else {
    // A subset the request did not send is the config's, chosen for the config's population: a
    // smaller --population alone must not be refused over a value the client never gave.
    if (!req.subset) p.subset = std::min(p.subset, p.population);
    ZAYA_RETURN_IF_ERROR(CheckRange("subset", p.subset, 1, p.population, "at most population"));
    ZAYA_RETURN_IF_ERROR(CheckRange("tail", p.tail, 1, cfg.max_tail, "rsa.max_tail"));
    p.tail = std::min(p.tail, p.budget);
  }
  if (!std::isfinite(p.temperature) || p.temperature < 0 || p.temperature > kMaxTemperature) {
    char allowed[64];
    std::snprintf(allowed, sizeof allowed, " is out of range; allowed 0..%g (0 = greedy)",
                  kMaxTemperature);
    return InvalidArgument("temperature = " + std::to_string(p.temperature) + allowed);
  }
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return InvalidArgument("top_p = " + std::to_string(p.top_p) +
                           " is out of range; allowed (0, 1]");
  }
  return p;
}

int64_t WorstCaseStateTokens(const RsaParams& p, int64_t prompt_tokens) {
  return static_cast<int64_t>(p.population) *
         (prompt_tokens + static_cast<int64_t>(p.subset) * p.tail + p.budget);
}

int64_t WorstCaseGeneratedTokens(const RsaParams& p) {
  return static_cast<int64_t>(p.population) * p.budget * (p.rounds + 1);
}

}  // namespace zaya
