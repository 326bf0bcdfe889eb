#include "engine/rsa/subsets.h"

#include <numeric>
#include <string>
#include <utility>

namespace zaya {

Result<std::vector<std::vector<int>>> DrawSubsets(int members, int subset, int population,
                                                  Rng& rng) {
  if (members < 1 || subset < 1 || population < 1) {
    return InvalidArgument("RSA subsets need members, subset and population >= 1 (got " +
                           std::to_string(members) + ", " + std::to_string(subset) + ", " +
                           std::to_string(population) + ")");
  }
  if (subset > population) {
    return InvalidArgument("subset (C) = " + std::to_string(subset) +
                           " is larger than the population (N) = " + std::to_string(population) +
                           "; candidates are drawn without replacement, so use C <= N");
  }
  std::vector<std::vector<int>> out(members);
  std::vector<int> perm(population);
  for (auto& draw : out) {
    std::iota(perm.begin(), perm.end(), 0);
    draw.resize(subset);
    for (int k = 0; k < subset; ++k) {
      const int j = k + static_cast<int>(rng.Below(static_cast<uint64_t>(population - k)));
      std::swap(perm[k], perm[j]);
      draw[k] = perm[k];
    }
  }
  return out;
}

}  // namespace zaya
