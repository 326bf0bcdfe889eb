// The text of an RSA aggregation prompt (the user message; the chat template wraps it later).
//
// Template syntax (RsaConfig::aggregation_template; empty = the built-in kDefaultAggregationTemplate):
//   {question}                     the problem, verbatim
//   {count}                        the number of candidates
//   {candidates} ... {/candidates} the text between is repeated once per candidate, with
//       {index}             1-based candidate number
//       {text}              the candidate's tail text
//       {truncated_marker}  kTruncatedMarker when the tail was cut, else nothing
//   {{ and }}                      literal { and }
// Any other {name} (letters, digits, '_' or '/') is an error at load, so a typo in a placeholder is
// caught when the config is read, not silently sent to the model; braces not forming such a name
// (e.g. \boxed{}) are literal. Required: {question} once or more, exactly one {candidates} block
// containing {text}; {index}/{text}/{truncated_marker} only inside it.
//
// Thread safety: AggregationTemplate is immutable after Parse; Render may run on several threads.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace zaya {

inline constexpr std::string_view kTruncatedMarker = "[...truncated...] ";

// Follows the structure in RSA.md: instruction, problem, "Candidate i" blocks, request for one
// improved solution ending in \boxed{}.
extern const std::string_view kDefaultAggregationTemplate;

struct AggregationCandidate {
  std::string_view text;
  bool truncated = false;
};

class AggregationTemplate {
 public:
  // Parses and validates; an empty text gives the default template. Errors name the offset and
  // the offending placeholder.
  static Result<AggregationTemplate> Parse(std::string_view text);

  std::string Render(std::string_view question,
                     std::span<const AggregationCandidate> candidates) const;

 private:
  enum class Kind { kLiteral, kQuestion, kCount, kIndex, kText, kTruncatedMarker };
  struct Piece {
    Kind kind;
    std::string literal;
  };
  static void RenderPieces(const std::vector<Piece>& pieces, std::string_view question,
                           size_t count, size_t index, const AggregationCandidate* candidate,
                           std::string& out);

  std::vector<Piece> head_;       // before {candidates}
  std::vector<Piece> candidate_;  // between {candidates} and {/candidates}
  std::vector<Piece> tail_;       // after {/candidates}
};

}  // namespace zaya
