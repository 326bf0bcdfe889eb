#include "engine/rsa/vote.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace zaya {
namespace {

using Answers = std::vector<std::optional<std::string>>;

TEST(VoteTest, MajorityWinsAndTallyIsSorted) {
  const Answers a = {"3", "5", "3", std::nullopt, "7", "3", "5", ""};
  VoteResult r = MajorityVote(a);
  EXPECT_EQ(r.winner, "3");
  EXPECT_EQ(r.winner_votes, 3);
  EXPECT_EQ(r.voters, 6);
  EXPECT_EQ(r.abstained, 2);
  ASSERT_EQ(r.tally.size(), 3u);
  EXPECT_EQ(r.tally[0].answer, "3");
  EXPECT_EQ(r.tally[1].answer, "5");
  EXPECT_EQ(r.tally[1].votes, 2);
  EXPECT_EQ(r.tally[2].answer, "7");
  EXPECT_EQ(r.tally[2].first_member, 4);
}

TEST(VoteTest, TieGoesToTheAnswerThatReachedTheTopCountFirst) {
  // A and B end with 2 votes each; B reached 2 at member 2, A at member 3.
  VoteResult r = MajorityVote(Answers{"A", "B", "B", "A"});
  EXPECT_EQ(r.winner, "B");
  EXPECT_EQ(r.tally[0].reached_member, 2);
  // Single votes: the first member's answer reached 1 first.
  EXPECT_EQ(MajorityVote(Answers{"x", "y", "z"}).winner, "x");
  // Abstentions do not shift the rule.
  EXPECT_EQ(MajorityVote(Answers{std::nullopt, "y", "x", "x", "y"}).winner, "x");
}

TEST(VoteTest, NobodyVoted) {
  VoteResult r = MajorityVote(Answers{std::nullopt, ""});
  EXPECT_FALSE(r.winner.has_value());
  EXPECT_EQ(r.voters, 0);
  EXPECT_EQ(r.abstained, 2);
  EXPECT_TRUE(r.tally.empty());
  EXPECT_FALSE(MajorityVote(Answers{}).winner.has_value());
}

TEST(VoteTest, IsDeterministic) {
  const Answers a = {"1", "2", "3", "2", "1", "3"};
  EXPECT_EQ(MajorityVote(a).winner, MajorityVote(a).winner);
  EXPECT_EQ(MajorityVote(a).winner, "2");  // 2 reached 2 votes at member 3, first of the three
}

}  // namespace
}  // namespace zaya
