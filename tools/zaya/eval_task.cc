#include "tools/zaya/eval_task.h"

#include <algorithm>
#include <cmath>

#include "engine/rsa/answer.h"

namespace zaya::eval {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
constexpr int kModulus = 100;

uint64_t Finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [lo, hi]; the modulo bias for ranges this small is below 2^-50.
int UniformInt(uint64_t* state, int lo, int hi) {
  const uint64_t range = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int>(SplitMix64(state) % range);
}

}  // namespace

uint64_t SplitMix64(uint64_t* state) {
  *state += kGolden;
  return Finalize(*state);
}

uint64_t Mix(uint64_t a, uint64_t b) { return Finalize(Finalize(a + kGolden) ^ (b * kGolden)); }

std::string IterateQuestion(int x0, int a, int b, int n) {
  return "Let x = " + std::to_string(x0) + ". Repeat " + std::to_string(n) + " times: x = x*" +
         std::to_string(a) + "+" + std::to_string(b) +
         ", keeping only the last two digits of x. What is x at the end?";
}

int IterateAnswer(int x0, int a, int b, int n) {
  int x = x0;
  for (int i = 0; i < n; ++i) x = (x * a + b) % kModulus;
  return x;
}

IterateProblem MakeIterateProblem(uint64_t seed, int index, int n_lo, int n_hi) {
  // One independent stream per (seed, index): problem i never depends on how many were drawn.
  uint64_t state = Mix(seed, static_cast<uint64_t>(index));
  IterateProblem p;
  p.index = index;
  p.x0 = UniformInt(&state, 10, 99);
  p.a = UniformInt(&state, 2, 9);
  p.b = UniformInt(&state, 1, 9);
  p.n = UniformInt(&state, n_lo, n_hi);
  p.question = IterateQuestion(p.x0, p.a, p.b, p.n);
  p.answer = std::to_string(IterateAnswer(p.x0, p.a, p.b, p.n));
  return p;
}

std::vector<IterateProblem> MakeIterateProblems(uint64_t seed, int count, int n_lo, int n_hi) {
  std::vector<IterateProblem> out;
  out.reserve(count > 0 ? static_cast<size_t>(count) : 0);
  for (int i = 0; i < count; ++i) out.push_back(MakeIterateProblem(seed, i, n_lo, n_hi));
  return out;
}

uint64_t RequestSeed(uint64_t sample_seed, int index) {
  // A different salt from the problem stream, so sample seed S and problem seed S are unrelated.
  return Mix(sample_seed ^ 0x5a4d504c45ull, static_cast<uint64_t>(index));
}

std::optional<std::string> ExtractFinalAnswer(std::string_view text) {
  auto raw = ExtractBoxed(text);
  if (!raw) return std::nullopt;
  std::string normalized = NormalizeAnswer(*raw);
  if (normalized.empty()) return std::nullopt;
  return normalized;
}

bool AnswerMatches(const std::optional<std::string>& answer, std::string_view truth) {
  if (!answer) return false;
  const std::string want = NormalizeAnswer(truth);
  return !want.empty() && NormalizeAnswer(*answer) == want;
}

Interval Wilson(int64_t k, int64_t n, double z) {
  if (n <= 0) return {};
  const double nn = static_cast<double>(n);
  const double p = static_cast<double>(k) / nn;
  const double z2 = z * z;
  const double denom = 1 + z2 / nn;
  const double center = (p + z2 / (2 * nn)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denom;
  return {p, std::max(0.0, center - half), std::min(1.0, center + half)};
}

std::vector<std::string> SplitCommas(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    out.emplace_back(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace zaya::eval
