// Candidate subsets for one RSA aggregation round: each of `members` new members gets `subset`
// distinct indices into the previous population [0, population), drawn uniformly WITHOUT
// replacement (a partial Fisher-Yates shuffle), independently per member, from the request's seeded
// Rng. The indices are kept in draw order, which is also the order the candidates appear in that
// member's aggregation prompt (so no fixed position bias). Same seed -> same subsets.
//
// Thread safety: pure function of its arguments; the Rng is advanced.
#pragma once

#include <vector>

#include "base/status.h"
#include "engine/sampler/rng.h"

namespace zaya {

// Errors (kInvalidArgument): members < 1, subset < 1, population < 1, subset > population.
Result<std::vector<std::vector<int>>> DrawSubsets(int members, int subset, int population,
                                                  Rng& rng);

}  // namespace zaya
