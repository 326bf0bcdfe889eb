// Majority vote over the final population's extracted answers.
//
// Answers are compared as given (normalise them first: AnswerExtractor::ExtractNormalized). Missing
// (nullopt) and empty answers abstain. Tie rule, deterministic and documented in docs/rsa.md: among
// answers with the top count, the winner is the one that REACHED that count first when the members
// are counted in member order. E.g. [A, B, B, A]: A and B both end with 2 votes, B reached 2 at
// member 2, A only at member 3, so B wins.
//
// Thread safety: pure function.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace zaya {

struct VoteEntry {
  std::string answer;
  int votes = 0;
  int first_member = 0;    // index of the first member that gave this answer
  int reached_member = 0;  // index of the member whose vote brought it to its final count
};

struct VoteResult {
  std::optional<std::string> winner;  // nullopt when nobody voted
  int winner_votes = 0;
  int voters = 0;     // members with an answer
  int abstained = 0;  // members without one
  // Every distinct answer, most votes first; equal counts ordered by reached_member (so
  // tally.front() is always the winner).
  std::vector<VoteEntry> tally;
};

VoteResult MajorityVote(std::span<const std::optional<std::string>> answers);

}  // namespace zaya
