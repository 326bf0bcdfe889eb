// Greedy decoding through ZayaModel::Forward for tests that compare tokens with a reference: the
// prompt in one step, then one token per step, on `slot` with KV blocks `table`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "engine/model/zaya_model.h"

namespace zaya::testing {

inline Result<std::vector<int32_t>> GreedyDecode(ZayaModel& model, std::span<const int32_t> prompt,
                                                 size_t n, int32_t slot,
                                                 std::span<const int32_t> table) {
  std::vector<int32_t> step(prompt.begin(), prompt.end()), out;
  std::vector<float> logits;
  int32_t pos = 0;
  while (out.size() < n) {
    StepSequence s;
    s.slot = slot;
    s.tokens = step;
    s.start_pos = pos;
    s.block_table = table;
    ZAYA_RETURN_IF_ERROR(model.Forward(std::span<const StepSequence>(&s, 1), &logits));
    pos += static_cast<int32_t>(step.size());
    const auto next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    step.assign(1, next);
  }
  return out;
}

}  // namespace zaya::testing
