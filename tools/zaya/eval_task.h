// The pieces of `zaya eval` that do not talk to the daemon: the held-out problems of the bundled
// model's task, answer checking, and the statistics of the report.
//
// Task ("iterate", tools/train/ztask.py): x starts at a 2-digit number x0; n times,
// x <- (x*a + b) mod 100. The question text is byte-identical to ztask.py's Problem.question, so
// the model sees exactly the wording it was trained on.
//
// Problems are a pure function of (seed, index, n_lo, n_hi): problem i of seed S is the same
// whatever --problems is and on every machine (splitmix64, no std:: distributions, whose output
// differs between standard libraries). The generator is not Python's random, so the problems are
// not the ones tools/train/eval.py draws for the same seed.
//
// Thread safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zaya::eval {

// One step of splitmix64: advances *state and returns the next output.
uint64_t SplitMix64(uint64_t* state);

// A 64-bit hash of (a, b) built from splitmix64's finaliser; used to derive independent streams.
uint64_t Mix(uint64_t a, uint64_t b);

struct IterateProblem {
  int index = 0;  // position in the run, 0-based
  int x0 = 0;     // 10..99
  int a = 0;      // 2..9
  int b = 0;      // 1..9
  int n = 0;      // steps, n_lo..n_hi
  std::string question;
  std::string answer;  // decimal, no leading zeros ("7", not "07")
};

inline constexpr int kMaxIterateSteps = 100000;

// The question text of ztask.py for these numbers.
std::string IterateQuestion(int x0, int a, int b, int n);
// x after n steps of x <- (x*a + b) mod 100.
int IterateAnswer(int x0, int a, int b, int n);

// Problem `index` of `seed`, with n uniform in [n_lo, n_hi]. Requires 0 <= n_lo <= n_hi <=
// kMaxIterateSteps (callers validate user input first).
IterateProblem MakeIterateProblem(uint64_t seed, int index, int n_lo, int n_hi);
std::vector<IterateProblem> MakeIterateProblems(uint64_t seed, int count, int n_lo, int n_hi);

// The sampling seed sent with problem `index`: depends on the sampling seed and the index only, so
// every mode samples problem i from the same seed and a run is reproducible.
uint64_t RequestSeed(uint64_t sample_seed, int index);

// The final answer of a generated text as the daemon's default `boxed` extractor sees it: the last
// complete \boxed{...}, normalised (engine/rsa/answer.h). nullopt when there is none.
std::optional<std::string> ExtractFinalAnswer(std::string_view text);

// True when `answer` (already extracted) equals `truth` after the daemon's normalisation.
bool AnswerMatches(const std::optional<std::string>& answer, std::string_view truth);

// Wilson score interval for k successes out of n at the given z (1.96: 95%). n == 0 gives
// {0, 0, 1}: nothing is known.
struct Interval {
  double estimate = 0;
  double lo = 0;
  double hi = 1;
};
Interval Wilson(int64_t k, int64_t n, double z = 1.96);

// Splits "single,rsa" on commas; empty items are kept (callers reject them).
std::vector<std::string> SplitCommas(std::string_view text);

}  // namespace zaya::eval
