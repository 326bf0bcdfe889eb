// The text of an RSA aggregation prompt (the user message; the chat template wraps it later).
//
// Template syntax: config/aggregation_template.h (RsaConfig::aggregation_template; empty = the
// built-in kDefaultAggregationTemplate). The config loader parses it with the same function, so a
// typo in a placeholder is caught when the config is read, not silently sent to the model.
//
// Thread safety: AggregationTemplate is immutable after Parse; Render may run on several threads.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "config/aggregation_template.h"

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
  using Piece = AggregationTemplatePiece;
  static void RenderPieces(const std::vector<Piece>& pieces, std::string_view question,
                           size_t count, size_t index, const AggregationCandidate* candidate,
                           std::string& out);

  AggregationTemplateParts parts_;
};

}  // namespace zaya
