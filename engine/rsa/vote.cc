#include "engine/rsa/vote.h"

#include <algorithm>
#include <unordered_map>

namespace zaya {

VoteResult MajorityVote(std::span<const std::optional<std::string>> answers) {
  VoteResult result;
  std::unordered_map<std::string, size_t> index;
  for (size_t m = 0; m < answers.size(); ++m) {
    const auto& a = answers[m];
    if (!a || a->empty()) {
      ++result.abstained;
      continue;
    }
    ++result.voters;
    auto [it, inserted] = index.try_emplace(*a, result.tally.size());
    if (inserted) {
      result.tally.push_back({*a, 0, static_cast<int>(m), 0});
    }
    VoteEntry& e = result.tally[it->second];
    ++e.votes;
    e.reached_member = static_cast<int>(m);
  }
  std::stable_sort(result.tally.begin(), result.tally.end(),
                   [](const VoteEntry& x, const VoteEntry& y) {
                     return x.votes > y.votes ||
                            (x.votes == y.votes && x.reached_member < y.reached_member);
                   });
  if (!result.tally.empty()) {
    result.winner = result.tally.front().answer;
    result.winner_votes = result.tally.front().votes;
  }
  return result;
}

}  // namespace zaya
