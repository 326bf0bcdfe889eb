#include "engine/rsa/answer.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace zaya {
namespace {

using Opt = std::optional<std::string>;

TEST(AnswerTest, BoxedTable) {
  struct Case {
    const char* text;
    Opt want;
  };
  const Case cases[] = {
      {"so \\boxed{42}.", "42"},
      {"first \\boxed{1} then \\boxed{2}", "2"},
      {"\\boxed{\\frac{3}{4}}", "\\frac{3}{4}"},
      {"\\boxed{ {a}{ {b} } }", " {a}{ {b} } "},
      {"\\boxed {7}", "7"},
      {"set \\boxed{\\{1,2\\}}", "\\{1,2\\}"},           // escaped braces do not group
      {"\\boxed{5} and then \\boxed{6", "5"},             // trailing cut-off box is skipped
      {"\\boxed{unclosed", std::nullopt},
      {"no box here 17", std::nullopt},
      {"\\boxed", std::nullopt},
      {"\\boxed{}", ""},
      {"\\boxed{\\boxed{3}}", "3"},
      {"\\boxed{x}}}}", "x"},
  };
  for (const Case& c : cases) EXPECT_EQ(ExtractBoxed(c.text), c.want) << c.text;
}

TEST(AnswerTest, AnswerTagTable) {
  EXPECT_EQ(ExtractAnswerTag("<answer>12</answer>"), Opt("12"));
  EXPECT_EQ(ExtractAnswerTag("<answer>1</answer> x <answer> 2 </answer>"), Opt(" 2 "));
  EXPECT_EQ(ExtractAnswerTag("<answer>open only"), std::nullopt);
  EXPECT_EQ(ExtractAnswerTag("close only</answer>"), std::nullopt);
  EXPECT_EQ(ExtractAnswerTag("<answer></answer>"), Opt(""));
}

TEST(AnswerTest, LastNumberTable) {
  struct Case {
    const char* text;
    Opt want;
  };
  const Case cases[] = {
      {"the answer is 42", "42"},
      {"x = -3 or 7.", "7"},
      {"temperature -12.5 degrees", "-12.5"},
      {"ratio 3/4", "3/4"},
      {"total 1,000,000 apples", "1000000"},
      {"pairs 1,2", "2"},
      {"3-4", "4"},
      {"value .5", "0.5"},
      {"value -.25!", "-0.25"},
      {"1,0000", "0000"},  // not a thousands group: "1" then "0000"
      {"no digits", std::nullopt},
      {"", std::nullopt},
      {"x2", "2"},
      {"costs $1,234.50.", "1234.50"},
      {"end 12.", "12"},
  };
  for (const Case& c : cases) EXPECT_EQ(ExtractLastNumber(c.text), c.want) << c.text;
}

TEST(AnswerTest, NormalizeTable) {
  struct Case {
    const char* in;
    const char* want;
  };
  const Case cases[] = {
      {"  42  ", "42"},
      {"$42$", "42"},
      {"$$ 42 $$", "42"},
      {"\\(x+1\\)", "x+1"},
      {"42.", "42"},
      {"$5$.", "5"},
      {"1,000", "1000"},
      {"1{,}000{,}000", "1000000"},
      {"(1, 2)", "(1, 2)"},
      {"\\dfrac{1}{2}", "\\frac{1}{2}"},
      {"a  \n b", "a b"},
      {"3.14", "3.14"},
      {"   ", ""},
      {"$.$", ""},
  };
  for (const Case& c : cases) EXPECT_EQ(NormalizeAnswer(c.in), c.want) << c.in;
}

TEST(AnswerTest, ExtractorKinds) {
  EXPECT_EQ(AnswerExtractor::Create("boxed")->Extract("\\boxed{9}"), Opt("9"));
  EXPECT_EQ(AnswerExtractor::Create("answer_tag")->Extract("<answer>9</answer>"), Opt("9"));
  EXPECT_EQ(AnswerExtractor::Create("last_number")->Extract("9 then 10"), Opt("10"));
  EXPECT_EQ(AnswerExtractor::Create("boxed")->ExtractNormalized("\\boxed{$1,000$.}"),
            Opt("1000"));
  EXPECT_EQ(AnswerExtractor::Create("boxed")->ExtractNormalized("\\boxed{ }"), std::nullopt);
  auto bad = AnswerExtractor::Create("magic");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("last_number"), std::string::npos);
}

TEST(AnswerTest, RegexExtractor) {
  auto re = AnswerExtractor::Create("regex", "Final answer: (\\w+)");
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  EXPECT_EQ(re->Extract("Final answer: A ... Final answer: C"), Opt("C"));
  EXPECT_EQ(re->Extract("nothing"), std::nullopt);
  auto no_group = AnswerExtractor::Create("regex", "[0-9]+");
  EXPECT_EQ(no_group->Extract("a 1 b 22"), Opt("22"));
  // A pattern that matches empty strings terminates.
  auto empty = AnswerExtractor::Create("regex", "x*");
  EXPECT_EQ(empty->Extract("ab"), Opt(""));
  EXPECT_FALSE(AnswerExtractor::Create("regex", "(unclosed").ok());
  EXPECT_FALSE(AnswerExtractor::Create("regex", "").ok());
  // Long input: only the window is searched, and it does not overflow the stack.
  std::string long_text(200000, 'a');
  long_text += " Final answer: Z";
  EXPECT_EQ(re->Extract(long_text), Opt("Z"));
  auto greedy = AnswerExtractor::Create("regex", "([ab]*)Z");
  auto got = greedy->Extract(long_text);
  ASSERT_TRUE(got.has_value());
  EXPECT_LE(got->size(), kRegexWindowBytes);
}

// The window cut the text at a byte count, possibly inside a character: its continuation bytes
// then matched and became an answer that is not UTF-8.
TEST(AnswerTest, RegexWindowStartsOnACharacterBoundary) {
  auto re = AnswerExtractor::Create("regex", "([^x]+)");
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  // 3 + 1022 bytes: the last kRegexWindowBytes start on the second byte of U+65E5.
  EXPECT_EQ(re->Extract("\u65E5" + std::string(kRegexWindowBytes - 2, 'x')), std::nullopt);
  // A character starting exactly at the window's edge is kept whole.
  EXPECT_EQ(re->Extract("a\u65E5" + std::string(kRegexWindowBytes - 3, 'x')), Opt("\u65E5"));
}

// The documented rule is group 1 of the LAST match; a last match without group 1 kept the group of
// an earlier one, so "(\d+)|none" answered 5 for a text ending in "none".
TEST(AnswerTest, RegexGroupComesFromTheLastMatchOnly) {
  auto re = AnswerExtractor::Create("regex", "answer: (?:(\\d+)|none)");
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  EXPECT_EQ(re->Extract("answer: 5 ... on second thought, answer: none"), std::nullopt);
  EXPECT_EQ(re->Extract("answer: none ... answer: 7"), Opt("7"));
  auto alt = AnswerExtractor::Create("regex", "(\\d+)|none");
  EXPECT_EQ(alt->Extract("x 5 y none"), std::nullopt);
}

}  // namespace
}  // namespace zaya
