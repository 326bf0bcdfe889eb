// The Markovian carry-over: only the last tau tokens of a trace survive into the next round.
// Token-exact: the tail is cut on token ids, never on text, so its length in the next prompt is
// exactly known (RSA.md: "Zyphra counts tails in tokens, not words").
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace zaya {

struct Tail {
  std::vector<int32_t> tokens;  // the last min(tau, trace.size()) tokens of the trace, in order
  bool truncated = false;       // true when tokens were dropped from the front
};

// tau <= 0 gives an empty tail (truncated when the trace was not empty).
Tail TakeTail(std::span<const int32_t> trace, int64_t tau);

}  // namespace zaya
