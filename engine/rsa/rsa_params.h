// Effective parameters of one `solve` request: SolveParams overrides (engine/engine.h) resolved
// against the [rsa] defaults and limits (config/config.h RsaConfig).
//
// Rules:
//   - each unset override takes the config default; every value is checked against its limit and
//     an error names the field, the value and the allowed range;
//   - mode "single": N = 1, T = 0; mode "parallel": T = 0 (plain parallel sampling + vote);
//     an explicit override contradicting the mode (population != 1 for single, rounds != 0 for
//     single/parallel) is an error rather than silently ignored;
//   - T = 0 sets C = 0 (no aggregation prompt is ever built); otherwise 1 <= C <= N, where a C
//     taken from the config is lowered to N and only an explicit C above N is an error;
//   - tau is clamped to beta (a tail cannot be longer than the trace it is cut from);
//   - seed: the override, else `fallback_seed` (the engine's choice, e.g. random per request).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/status.h"
#include "config/config.h"
#include "engine/engine.h"

namespace zaya {

enum class RsaMode { kSingle, kParallel, kRsa };

std::string_view RsaModeName(RsaMode mode);

struct RsaParams {
  RsaMode mode = RsaMode::kRsa;
  int population = 1;  // N
  int subset = 0;      // C (0 when rounds == 0)
  int rounds = 0;      // T
  int tail = 0;        // tau, tokens (<= budget)
  int budget = 1;      // beta, generated tokens per trace
  double temperature = 1.0;
  double top_p = 1.0;
  uint64_t seed = 0;
};

Result<RsaParams> ResolveRsaParams(const SolveParams& request, const RsaConfig& config,
                                   uint64_t fallback_seed);

// Most KV tokens one round can hold: N x (prompt_tokens + C x tau + beta), where prompt_tokens is
// the question plus every fixed token around it (chat template, aggregation instructions). Round 0
// needs N x (prompt_tokens + beta), which this bounds.
int64_t WorstCaseStateTokens(const RsaParams& params, int64_t prompt_tokens);

// Most generated tokens over the whole request: N x beta x (T + 1).
int64_t WorstCaseGeneratedTokens(const RsaParams& params);

}  // namespace zaya
