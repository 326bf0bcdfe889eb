#include "engine/rsa/aggregation_prompt.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zaya {
namespace {

TEST(AggregationPromptTest, DefaultTemplateFollowsTheReferenceStructure) {
  auto t = AggregationTemplate::Parse("");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<AggregationCandidate> c = {{"so x = 4. \\boxed{4}", false},
                                               {"... hence \\boxed{5}", true}};
  const std::string p = t->Render("What is 2+2?", c);
  const size_t q = p.find("Problem:\nWhat is 2+2?\n");
  const size_t c1 = p.find("Candidate 1:\nso x = 4. \\boxed{4}\n");
  const size_t c2 = p.find("Candidate 2:\n[...truncated...] ... hence \\boxed{5}\n");
  const size_t end = p.find("Now write a single improved solution. End with the final answer in "
                            "\\boxed{}.");
  ASSERT_NE(q, std::string::npos) << p;
  ASSERT_NE(c1, std::string::npos) << p;
  ASSERT_NE(c2, std::string::npos) << p;
  ASSERT_NE(end, std::string::npos) << p;
  EXPECT_LT(q, c1);
  EXPECT_LT(c1, c2);
  EXPECT_LT(c2, end);
  EXPECT_EQ(p.find("Candidate 3"), std::string::npos);
  EXPECT_TRUE(p.starts_with("You are given a problem and several candidate solutions."));
  // Candidate 1 was not cut: no marker right after its header.
  EXPECT_EQ(p.find("Candidate 1:\n[...truncated...]"), std::string::npos);
}

TEST(AggregationPromptTest, CustomTemplateExactRender) {
  auto t = AggregationTemplate::Parse(
      "Q={question} n={count}\n{candidates}<c{index}>{truncated_marker}{text}</c{index}>"
      "{/candidates}\n{{literal}} \\boxed{} {question}");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<AggregationCandidate> c = {{"a", false}, {"b", true}};
  EXPECT_EQ(t->Render("q?", c),
            "Q=q? n=2\n<c1>a</c1><c2>[...truncated...] b</c2>\n{literal} \\boxed{} q?");
  // Candidate text containing placeholder-like braces is inserted verbatim, not re-expanded.
  const std::vector<AggregationCandidate> tricky = {{"{question} {{x}}", false}};
  EXPECT_EQ(t->Render("Q", tricky), "Q=Q n=1\n<c1>{question} {{x}}</c1>\n{literal} \\boxed{} Q");
}

TEST(AggregationPromptTest, InvalidTemplatesAreErrors) {
  const char* bad[] = {
      "{question} no candidates",
      "{question} {candidates}{text}",                       // not closed
      "{question} {/candidates}",                            // close without open
      "{candidates}{text}{/candidates}",                     // no question
      "{question}{candidates}{index}{/candidates}",          // no text in the block
      "{question}{text}{candidates}{text}{/candidates}",     // text outside the block
      "{question}{candidates}{text}{/candidates}{candidates}{text}{/candidates}",
      "{question}{candidates}{txet}{/candidates}",           // typo
      "{question} \\frac{a}{b} {candidates}{text}{/candidates}",
  };
  for (const char* b : bad) {
    auto t = AggregationTemplate::Parse(b);
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << b;
  }
  auto typo = AggregationTemplate::Parse("{question}{candidates}{txet}{/candidates}");
  EXPECT_NE(typo.status().message().find("{txet}"), std::string::npos);
  EXPECT_NE(typo.status().message().find("offset 22"), std::string::npos);
  // Escaped, the LaTeX is fine.
  EXPECT_TRUE(AggregationTemplate::Parse(
                  "{question} \\frac{{a}}{{b}} {candidates}{text}{/candidates}")
                  .ok());
}

}  // namespace
}  // namespace zaya
