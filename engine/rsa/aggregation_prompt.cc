#include "engine/rsa/aggregation_prompt.h"

namespace zaya {

const std::string_view kDefaultAggregationTemplate =
    "You are given a problem and several candidate solutions. Some candidates may be incorrect or "
    "incomplete, and a candidate marked [...truncated...] shows only the end of a longer "
    "solution. Use what is correct, fix what is not, and write one improved, complete solution. "
    "If all candidates are flawed, solve the problem from scratch.\n\n"
    "Problem:\n{question}\n\n"
    "{candidates}Candidate {index}:\n{truncated_marker}{text}\n\n{/candidates}"
    "Now write a single improved solution. End with the final answer in \\boxed{}.";

Result<AggregationTemplate> AggregationTemplate::Parse(std::string_view text) {
  if (text.empty()) text = kDefaultAggregationTemplate;
  AggregationTemplate t;
  ZAYA_ASSIGN_OR_RETURN(t.parts_, ParseAggregationTemplate(text));
  return t;
}

void AggregationTemplate::RenderPieces(const std::vector<Piece>& pieces, std::string_view question,
                                       size_t count, size_t index,
                                       const AggregationCandidate* candidate, std::string& out) {
  using Kind = Piece::Kind;
  for (const Piece& p : pieces) {
    switch (p.kind) {
      case Kind::kLiteral:
        out += p.literal;
        break;
      case Kind::kQuestion:
        out += question;
        break;
      case Kind::kCount:
        out += std::to_string(count);
        break;
      case Kind::kIndex:
        out += std::to_string(index + 1);
        break;
      case Kind::kText:
        out += candidate->text;
        break;
      case Kind::kTruncatedMarker:
        if (candidate->truncated) out += kTruncatedMarker;
        break;
    }
  }
}

std::string AggregationTemplate::Render(std::string_view question,
                                        std::span<const AggregationCandidate> candidates) const {
  std::string out;
  size_t size = question.size() * 2 + 512;
  for (const auto& c : candidates) size += c.text.size() + 64;
  out.reserve(size);
  RenderPieces(parts_.head, question, candidates.size(), 0, nullptr, out);
  for (size_t i = 0; i < candidates.size(); ++i) {
    RenderPieces(parts_.candidate, question, candidates.size(), i, &candidates[i], out);
  }
  RenderPieces(parts_.tail, question, candidates.size(), 0, nullptr, out);
  return out;
}

}  // namespace zaya
