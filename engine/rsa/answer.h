// Final-answer extraction from a candidate's text, and normalisation so equal answers vote together.
//
// Extractors (RsaConfig::answer_extractor):
//   "boxed"       the content of the LAST complete \boxed{...} (nested braces balanced; a trailing
//                 \boxed{ cut off before its closing brace is skipped in favour of the previous one);
//   "answer_tag"  the content of the last <answer>...</answer>;
//   "last_number" the last number in the text: integers, decimals, negatives, fractions "3/4",
//                 thousands separators "1,000" (returned without commas);
//   "regex"       group 1 of the last match of a user ECMAScript regex (group 0 if it has none);
//                 no answer when group 1 did not take part in the last match.
//                 The regex sees only the last kRegexWindowBytes of the text: std::regex backtracks
//                 recursively (a long input could exhaust the stack) and nested quantifiers such
//                 as ((a|b)*)Z take quadratic or worse time, so keep patterns simple and anchored
//                 on literal text ("Final answer: (\w+)").
// No answer -> std::nullopt (such a candidate does not vote).
//
// Thread safety: AnswerExtractor is immutable after Create; Extract may run on several threads.
#pragma once

#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>

#include "base/status.h"

namespace zaya {

inline constexpr size_t kRegexWindowBytes = 1024;

std::optional<std::string> ExtractBoxed(std::string_view text);
std::optional<std::string> ExtractAnswerTag(std::string_view text);
std::optional<std::string> ExtractLastNumber(std::string_view text);

// For voting: trims whitespace, collapses inner whitespace runs to one space, strips enclosing
// $...$ / \(...\) and a trailing '.', removes thousands separators between digits ("1,000" ->
// "1000"), and maps \dfrac / \tfrac to \frac. An answer that normalises to "" counts as none.
std::string NormalizeAnswer(std::string_view answer);

class AnswerExtractor {
 public:
  // kind: "boxed" | "answer_tag" | "last_number" | "regex" (then `regex` must compile).
  static Result<AnswerExtractor> Create(std::string_view kind, std::string_view regex = {});

  // The raw extracted answer (not normalised), or nullopt.
  std::optional<std::string> Extract(std::string_view text) const;

  // Extract + NormalizeAnswer; nullopt when nothing was found or it normalises to "".
  std::optional<std::string> ExtractNormalized(std::string_view text) const;

  const std::string& kind() const { return kind_; }

 private:
  AnswerExtractor(std::string kind, std::shared_ptr<const std::regex> regex)
      : kind_(std::move(kind)), regex_(std::move(regex)) {}

  std::string kind_;
  std::shared_ptr<const std::regex> regex_;
};

}  // namespace zaya
