#include "engine/sampler/stop_checker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zaya {
namespace {

StopChecker Make(std::vector<int32_t> ids, std::vector<std::string> strings, int max_tokens = 100) {
  auto c = StopChecker::Create(std::move(ids), std::move(strings), max_tokens);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::move(c).value();
}

// Feeds pieces (token id = index + 10) and returns the concatenated streamed text.
std::string Stream(StopChecker& c, const std::vector<std::string>& pieces, FinishReason* finish) {
  std::string out;
  *finish = FinishReason::kNone;
  for (size_t i = 0; i < pieces.size(); ++i) {
    StopUpdate u = c.OnToken(static_cast<int32_t>(10 + i), pieces[i]);
    out += u.text;
    if (u.finish != FinishReason::kNone) {
      *finish = u.finish;
      return out;
    }
  }
  return out + c.Flush();
}

TEST(StopCheckerTest, RejectsBadConfig) {
  EXPECT_EQ(StopChecker::Create({}, {"ok", ""}, 10).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(StopChecker::Create({}, {}, 0).ok());
}

TEST(StopCheckerTest, StopTokenEndsWithoutItsText) {
  StopChecker c = Make({1}, {});
  EXPECT_EQ(c.OnToken(5, "Hello").text, "Hello");
  StopUpdate u = c.OnToken(1, "<eos>");
  EXPECT_EQ(u.finish, FinishReason::kStopToken);
  EXPECT_EQ(u.stop_token, 1);
  EXPECT_EQ(u.text, "");
  EXPECT_EQ(c.text(), "Hello");
  EXPECT_EQ(FinishReasonName(u.finish), "stop");
  // Calls after the finish are inert.
  EXPECT_EQ(c.OnToken(5, "x").finish, FinishReason::kStopToken);
  EXPECT_EQ(c.text(), "Hello");
}

// The engine feeds the decoder's last bytes (a character cut off by max_tokens or a stop token,
// as U+FFFD) after the finish. Through OnToken they were dropped: calls after a finish are inert.
TEST(StopCheckerTest, FinishWithSendsTheDecodersTailAfterTheHeldText) {
  const std::string fffd = "\xEF\xBF\xBD";
  StopChecker by_count = Make({}, {"STOP"}, 2);
  EXPECT_EQ(by_count.OnToken(5, "ab").text, "ab");
  StopUpdate last = by_count.OnToken(6, "ST");  // held: it may start "STOP"
  EXPECT_EQ(last.finish, FinishReason::kMaxTokens);
  EXPECT_EQ(by_count.OnToken(-1, fffd).text, "") << "the old path: inert after the finish";
  EXPECT_EQ(last.text + by_count.FinishWith(fffd), "ST" + fffd);
  EXPECT_EQ(by_count.text(), "abST" + fffd);
  StopChecker by_token = Make({1}, {});
  EXPECT_EQ(by_token.OnToken(5, "x").text, "x");
  EXPECT_EQ(by_token.OnToken(1, "<eos>").finish, FinishReason::kStopToken);
  EXPECT_EQ(by_token.FinishWith(fffd), fffd);
  StopChecker by_string = Make({}, {"END"});
  EXPECT_EQ(by_string.OnToken(5, "yEND").finish, FinishReason::kStopString);
  EXPECT_EQ(by_string.FinishWith(fffd), "") << "nothing follows a stop string";
}

TEST(StopCheckerTest, StopStringSpanningTokensIsNeverStreamed) {
  StopChecker c = Make({}, {"</answer>"});
  EXPECT_EQ(c.OnToken(1, "42 ").text, "42 ");
  StopUpdate u = c.OnToken(2, "</ans");
  EXPECT_EQ(u.text, "");  // could be the start of the stop string: held back
  EXPECT_EQ(c.held_bytes(), 5u);
  u = c.OnToken(3, "wer> trailing");
  EXPECT_EQ(u.finish, FinishReason::kStopString);
  EXPECT_EQ(u.stop_string, "</answer>");
  EXPECT_EQ(u.text, "");
  EXPECT_EQ(c.text(), "42 ");
}

TEST(StopCheckerTest, HeldTextIsReleasedWhenItStopsMatching) {
  StopChecker c = Make({}, {"STOP"});
  EXPECT_EQ(c.OnToken(1, "ab S").text, "ab ");
  EXPECT_EQ(c.OnToken(2, "T").text, "");
  EXPECT_EQ(c.OnToken(3, "x").text, "STx");
  EXPECT_EQ(c.held_bytes(), 0u);
}

TEST(StopCheckerTest, MatchInsideOnePieceCutsThere) {
  FinishReason f;
  StopChecker c = Make({}, {"\n\n", "###"});
  EXPECT_EQ(Stream(c, {"line one", " and###more\n\nx"}, &f), "line one and");
  EXPECT_EQ(f, FinishReason::kStopString);
  EXPECT_EQ(c.text(), "line one and");
}

TEST(StopCheckerTest, EarliestOfSeveralStopStringsWins) {
  StopChecker c = Make({}, {"xyz", "b"});
  StopUpdate u = c.OnToken(1, "aaxybxyz");
  EXPECT_EQ(u.stop_string, "b");
  EXPECT_EQ(c.text(), "aaxy");
  EXPECT_EQ(u.text, "aaxy");
}

TEST(StopCheckerTest, OverlappingPrefixesHoldTheLongestPartialMatch) {
  StopChecker c = Make({}, {"aab"});
  FinishReason f;
  EXPECT_EQ(Stream(c, {"a", "a", "a", "a", "b", "c"}, &f), "aa");
  EXPECT_EQ(f, FinishReason::kStopString);
}

TEST(StopCheckerTest, ByteByByteEqualsWholeText) {
  // Streaming one byte at a time gives exactly the prefix before the first match.
  const std::string text = "The answer is \\boxed{7}.<end>tail";
  StopChecker c = Make({}, {"<end>", "zzz"});
  std::vector<std::string> pieces;
  for (char ch : text) pieces.emplace_back(1, ch);
  FinishReason f;
  EXPECT_EQ(Stream(c, pieces, &f), "The answer is \\boxed{7}.");
  EXPECT_EQ(f, FinishReason::kStopString);
}

TEST(StopCheckerTest, MaxTokensReleasesEverything) {
  StopChecker c = Make({}, {"STOP"}, 2);
  EXPECT_EQ(c.OnToken(1, "a").text, "a");
  StopUpdate u = c.OnToken(2, " ST");
  EXPECT_EQ(u.finish, FinishReason::kMaxTokens);
  EXPECT_EQ(u.text, " ST");
  EXPECT_EQ(FinishReasonName(u.finish), "length");
  EXPECT_EQ(c.tokens(), 2);
}

TEST(StopCheckerTest, StopTokenReleasesHeldText) {
  StopChecker c = Make({0}, {"STOP"});
  EXPECT_EQ(c.OnToken(1, "x ST").text, "x ");
  StopUpdate u = c.OnToken(0, "");
  EXPECT_EQ(u.finish, FinishReason::kStopToken);
  EXPECT_EQ(u.text, "ST");
}

TEST(StopCheckerTest, FlushReturnsHeldText) {
  StopChecker c = Make({}, {"STOP"});
  EXPECT_EQ(c.OnToken(1, "abcSTO").text, "abc");
  EXPECT_EQ(c.Flush(), "STO");
  EXPECT_EQ(c.Flush(), "");
}

}  // namespace
}  // namespace zaya
