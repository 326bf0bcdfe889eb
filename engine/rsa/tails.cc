#include "engine/rsa/tails.h"

#include <algorithm>

namespace zaya {

Tail TakeTail(std::span<const int32_t> trace, int64_t tau) {
  const size_t keep = static_cast<size_t>(std::clamp<int64_t>(tau, 0, static_cast<int64_t>(trace.size())));
  Tail tail;
  tail.tokens.assign(trace.end() - static_cast<std::ptrdiff_t>(keep), trace.end());
  tail.truncated = keep < trace.size();
  return tail;
}

}  // namespace zaya
