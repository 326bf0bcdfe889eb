// Token sampling from one step's logits, configured from SamplingParams (engine/engine.h).
//
// Pipeline, in the order Hugging Face's generate applies its warpers:
//   temperature -> top-k -> top-p -> min-p -> draw.
//   - temperature 0 (or top_k 1, or a temperature so small that 1 / temperature overflows a float,
//     below ~3e-39) is greedy: the argmax; ties go to the LOWEST token id. No random number is
//     consumed.
//   - top-k keeps the k most probable tokens (ties broken towards the lower id).
//   - top-p keeps the smallest most-probable-first prefix whose mass reaches top_p of the (top-k)
//     distribution.
//   - min-p keeps tokens whose probability is >= min_p * the largest probability.
//   - the draw is inverse-CDF with a uniform double from the sequence's own xoshiro256** stream
//     (engine/sampler/rng.h), so the same seed and the same logits give the same tokens everywhere.
//     It walks the surviving tokens in ascending id order, or most probable first (ties: lower id
//     first) when top-p is on; both are total orders, whatever the standard library.
// Logit conventions: NaN is treated as -inf; -inf tokens are never drawn; if any logit is +inf the
// lowest id holding +inf is returned; if no logit is finite, token 0 (the argmax tie rule).
//
// Cost on a 262K vocabulary: plain temperature sampling (with or without min-p) is O(V) with no
// sort; top-k uses nth_element, then sorts the k by id; top-p sorts only a growing prefix (64, 256,
// ...) until it holds the mass.
//
// Thread-compatible: one Sampler per sequence (it owns that sequence's RNG and scratch buffers).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "engine/sampler/rng.h"

namespace zaya {

struct TokenProb {
  int32_t id = 0;
  double prob = 0.0;
};

class Sampler {
 public:
  // Validates the sampling fields (temperature finite and >= 0, top_k >= 0, 0 < top_p <= 1,
  // 0 <= min_p <= 1); max_tokens and stop strings belong to StopChecker and are not looked at.
  static Result<Sampler> Create(const SamplingParams& params);

  // Draws one token id in [0, logits.size()). logits must not be empty (programmer error).
  int32_t Sample(std::span<const float> logits);

  // The distribution Sample draws from, most probable first (ties: lower id first), probabilities
  // renormalised to sum to 1. Greedy gives one entry with probability 1. For tests and debugging;
  // does not touch the RNG.
  std::vector<TokenProb> Candidates(std::span<const float> logits) const;

  bool greedy() const { return greedy_; }

 private:
  struct Scratch {
    std::vector<float> weights;  // [vocab] exp((logit - max) / temperature), in (0, 1]
    std::vector<int32_t> ids;    // surviving token ids
  };

  Sampler(const SamplingParams& params, bool greedy);

  // Fills scratch with the surviving ids (sorted most probable first when `sorted` or when top-p
  // needed it) and returns their total weight; returns a negative value with scratch.ids holding the
  // single forced token (greedy, +inf, or no finite logit).
  double Filter(std::span<const float> logits, bool sorted, Scratch& scratch) const;

  double temperature_;
  int top_k_;
  double top_p_;
  double min_p_;
  bool greedy_;
  Rng rng_;
  Scratch scratch_;
};

// argmax with ties to the lowest id; NaN counts as -inf. logits must not be empty.
int32_t ArgMax(std::span<const float> logits);

}  // namespace zaya
