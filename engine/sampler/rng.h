// A small, portable, seeded pseudo-random generator: xoshiro256** (Blackman and Vigna, 2018) seeded
// through splitmix64. Same seed -> same stream on every compiler, standard library and platform,
// which std::*_distribution does not promise (libstdc++ and libc++ differ). Used for sampling and
// for RSA subset draws so a request with a fixed seed is reproducible.
//
// Not cryptographic. Thread-compatible: one Rng per sequence, not shared between threads.
#pragma once

#include <cstdint>

namespace zaya {

// One step of splitmix64 (advances *state). Also a good 64-bit mixer for deriving seeds.
uint64_t SplitMix64(uint64_t* state);

// A seed for stream `stream` (e.g. an RSA member index or round) derived from `base`; distinct
// streams of the same base are statistically independent.
uint64_t DeriveSeed(uint64_t base, uint64_t stream);

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // Uniform 64-bit value.
  uint64_t Next();

  // Uniform double in [0, 1) with 53 random bits.
  double NextDouble();

  // Uniform integer in [0, n) without modulo bias (Lemire's multiply-and-reject); n > 0.
  uint64_t Below(uint64_t n);

 private:
  uint64_t s_[4];
};

}  // namespace zaya
