#include "engine/sampler/sampler.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <system_error>

namespace zaya {
namespace {

constexpr size_t kTopPFirstChunk = 64;

// Most probable first; equal weights keep the lower id first, so every order is deterministic.
struct ByWeightDesc {
  const float* w;
  bool operator()(int32_t a, int32_t b) const {
    return w[a] > w[b] || (w[a] == w[b] && a < b);
  }
};

// The shortest text that reads back as `v`: std::to_string's six decimals printed a rejected
// top_p = 1.0000001 as "1.000000", a value that looks allowed.
std::string Shortest(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

}  // namespace

int32_t ArgMax(std::span<const float> logits) {
  assert(!logits.empty());
  int32_t best = 0;
  float best_value = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    // Strict '>' keeps the lowest id on ties; NaN compares false and never wins.
    if (logits[i] > best_value) {
      best_value = logits[i];
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

Result<Sampler> Sampler::Create(const SamplingParams& params) {
  if (!std::isfinite(params.temperature) || params.temperature < 0) {
    return InvalidArgument("temperature = " + Shortest(params.temperature) +
                           " is not allowed; use a finite value >= 0 (0 = greedy)");
  }
  if (params.top_k < 0) {
    return InvalidArgument("top_k = " + std::to_string(params.top_k) +
                           " is not allowed; use 0 (off) or a positive count");
  }
  if (!(params.top_p > 0 && params.top_p <= 1)) {
    return InvalidArgument("top_p = " + Shortest(params.top_p) +
                           " is not allowed; use a value in (0, 1] (1 = off)");
  }
  if (!(params.min_p >= 0 && params.min_p <= 1)) {
    return InvalidArgument("min_p = " + Shortest(params.min_p) +
                           " is not allowed; use a value in [0, 1] (0 = off)");
  }
  // Filter scales by 1 / temperature as a float; below ~3e-39 that overflowed to +inf, the top
  // token's weight became 0 * inf = NaN and Candidates reported NaN probabilities. That close to 0
  // the distribution is the argmax.
  const bool greedy = params.temperature == 0 || params.top_k == 1 ||
                      1.0 / params.temperature > std::numeric_limits<float>::max();
  return Sampler(params, greedy);
}

Sampler::Sampler(const SamplingParams& params, bool greedy)
    : temperature_(params.temperature),
      top_k_(params.top_k),
      top_p_(params.top_p),
      min_p_(params.min_p),
      greedy_(greedy),
      rng_(params.seed) {}

double Sampler::Filter(std::span<const float> logits, bool sorted, Scratch& s) const {
  assert(!logits.empty());
  const size_t vocab = logits.size();
  s.ids.clear();
  const int32_t top = ArgMax(logits);
  const float max_logit = logits[top];
  if (greedy_ || !std::isfinite(max_logit)) {
    // +inf dominates every finite logit; all -inf/NaN leaves nothing to draw from.
    s.ids.push_back(top);
    return -1.0;
  }

  s.weights.resize(vocab);
  const float inv_t = static_cast<float>(1.0 / temperature_);
  for (size_t i = 0; i < vocab; ++i) {
    const float x = logits[i];
    // NaN and -inf give weight 0 (std::exp(-inf) == 0; NaN is caught by the comparison).
    s.weights[i] = (x >= -std::numeric_limits<float>::max()) ? std::exp((x - max_logit) * inv_t)
                                                              : 0.0f;
  }
  const float* w = s.weights.data();
  // min-p as a weight threshold: p_i >= min_p * p_max  <=>  w_i >= min_p (w_max == 1).
  const float min_w = static_cast<float>(min_p_);
  const bool use_top_k = top_k_ > 0 && static_cast<size_t>(top_k_) < vocab;
  const bool use_top_p = top_p_ < 1.0;

  // Without top-p, min-p and top-k commute (both are thresholds on the same order), so min-p can
  // prune before anything is sorted. With top-p, HF order matters: top-p sees the top-k mass.
  const float pre_min = use_top_p ? 0.0f : min_w;
  for (size_t i = 0; i < vocab; ++i) {
    if (w[i] > 0.0f && w[i] >= pre_min) s.ids.push_back(static_cast<int32_t>(i));
  }
  if (s.ids.empty()) s.ids.push_back(top);  // min_p rounding can never drop the max, but be safe

  ByWeightDesc cmp{w};
  bool is_sorted = false;
  if (use_top_k && s.ids.size() > static_cast<size_t>(top_k_)) {
    std::nth_element(s.ids.begin(), s.ids.begin() + (top_k_ - 1), s.ids.end(), cmp);
    s.ids.resize(top_k_);
    // nth_element leaves the k in an order of the standard library's choosing, and the draw walks
    // them in that order: back to ascending ids, the order of every path without top-p.
    if (!use_top_p) std::sort(s.ids.begin(), s.ids.end());
  }

  double total = 0.0;
  for (int32_t id : s.ids) total += w[id];

  if (use_top_p) {
    const double target = top_p_ * total;
    size_t chunk = std::min(kTopPFirstChunk, s.ids.size());
    size_t keep = s.ids.size();
    double mass = 0.0;
    size_t done = 0;  // ids[0, done) are final and sorted; mass is their weight
    while (true) {
      if (chunk < s.ids.size()) {
        std::nth_element(s.ids.begin() + done, s.ids.begin() + chunk, s.ids.end(), cmp);
      }
      std::sort(s.ids.begin() + done, s.ids.begin() + chunk, cmp);
      size_t j = done;
      for (; j < chunk; ++j) {
        mass += w[s.ids[j]];
        if (mass >= target) break;
      }
      if (j < chunk) {
        keep = j + 1;
        break;
      }
      done = chunk;
      if (chunk == s.ids.size()) break;  // rounding: the whole set is the nucleus
      chunk = std::min(chunk * 4, s.ids.size());
    }
    s.ids.resize(keep);
    is_sorted = true;
    // min-p after top-p: a prefix of the sorted order.
    size_t n = 0;
    while (n < s.ids.size() && w[s.ids[n]] >= min_w) ++n;
    s.ids.resize(std::max<size_t>(n, 1));
    total = 0.0;
    for (int32_t id : s.ids) total += w[id];
  }
  if (sorted && !is_sorted) std::sort(s.ids.begin(), s.ids.end(), cmp);
  return total;
}

int32_t Sampler::Sample(std::span<const float> logits) {
  const double total = Filter(logits, /*sorted=*/false, scratch_);
  if (total < 0 || scratch_.ids.size() == 1) return scratch_.ids.front();
  const double u = rng_.NextDouble() * total;
  double acc = 0.0;
  for (int32_t id : scratch_.ids) {
    acc += scratch_.weights[id];
    if (u < acc) return id;
  }
  return scratch_.ids.back();  // u landed in the rounding gap at the very end
}

std::vector<TokenProb> Sampler::Candidates(std::span<const float> logits) const {
  Scratch s;
  const double total = Filter(logits, /*sorted=*/true, s);
  std::vector<TokenProb> out;
  if (total < 0) {
    out.push_back({s.ids.front(), 1.0});
    return out;
  }
  out.reserve(s.ids.size());
  for (int32_t id : s.ids) out.push_back({id, s.weights[id] / total});
  return out;
}

}  // namespace zaya
