// The syntax of [rsa] aggregation_template (docs/rsa.md). It is parsed here, below the engine, so
// that the config loader refuses a typo in a placeholder with the same parser the engine renders
// from (engine/rsa/aggregation_prompt.h), instead of every solve failing later.
//
//   {question}                     the problem, verbatim
//   {count}                        the number of candidates
//   {candidates} ... {/candidates} the text between is repeated once per candidate, with
//       {index}             1-based candidate number
//       {text}              the candidate's tail text
//       {truncated_marker}  a marker when the tail was cut, else nothing
//   {{ and }}                      literal { and }
// Any other {name} (letters, digits, '_' or '/') is an error; braces not forming such a name
// (e.g. \boxed{}) are literal. Required: {question} once or more, exactly one {candidates} block
// containing {text}; {index}/{text}/{truncated_marker} only inside it.
//
// Thread safety: pure function; the result is a plain value.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace zaya {

struct AggregationTemplatePiece {
  enum class Kind { kLiteral, kQuestion, kCount, kIndex, kText, kTruncatedMarker };
  Kind kind;
  std::string literal;  // for kLiteral
};

struct AggregationTemplateParts {
  std::vector<AggregationTemplatePiece> head;       // before {candidates}
  std::vector<AggregationTemplatePiece> candidate;  // between {candidates} and {/candidates}
  std::vector<AggregationTemplatePiece> tail;       // after {/candidates}
};

// Parses a non-empty template (an empty config value means the engine's built-in one, which the
// caller substitutes). Errors name the offending placeholder and its offset.
Result<AggregationTemplateParts> ParseAggregationTemplate(std::string_view text);

}  // namespace zaya
