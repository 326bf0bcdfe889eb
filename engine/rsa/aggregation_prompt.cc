#include "engine/rsa/aggregation_prompt.h"

#include <cctype>

namespace zaya {

const std::string_view kDefaultAggregationTemplate =
    "You are given a problem and several candidate solutions. Some candidates may be incorrect or "
    "incomplete, and a candidate marked [...truncated...] shows only the end of a longer "
    "solution. Use what is correct, fix what is not, and write one improved, complete solution. "
    "If all candidates are flawed, solve the problem from scratch.\n\n"
    "Problem:\n{question}\n\n"
    "{candidates}Candidate {index}:\n{truncated_marker}{text}\n\n{/candidates}"
    "Now write a single improved solution. End with the final answer in \\boxed{}.";

namespace {

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '/';
}

}  // namespace

Result<AggregationTemplate> AggregationTemplate::Parse(std::string_view text) {
  if (text.empty()) text = kDefaultAggregationTemplate;
  AggregationTemplate t;
  enum class Section { kHead, kCandidate, kTail } section = Section::kHead;
  std::vector<Piece>* pieces = &t.head_;
  int questions = 0, texts = 0;
  auto literal = [&](std::string_view s) {
    if (pieces->empty() || pieces->back().kind != Kind::kLiteral) {
      pieces->push_back({Kind::kLiteral, {}});
    }
    pieces->back().literal.append(s);
  };
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if ((c == '{' || c == '}') && i + 1 < text.size() && text[i + 1] == c) {
      literal(text.substr(i, 1));
      i += 2;
      continue;
    }
    size_t end = i + 1;
    if (c == '{') {
      while (end < text.size() && IsNameChar(text[end])) ++end;
    }
    if (c != '{' || end == i + 1 || end >= text.size() || text[end] != '}') {
      literal(text.substr(i, 1));
      ++i;
      continue;
    }
    const std::string_view name = text.substr(i + 1, end - i - 1);
    const std::string where = " at offset " + std::to_string(i) + " of the aggregation template";
    const bool in_block = section == Section::kCandidate;
    if (name == "question") {
      pieces->push_back({Kind::kQuestion, {}});
      ++questions;
    } else if (name == "count") {
      pieces->push_back({Kind::kCount, {}});
    } else if (name == "index" || name == "text" || name == "truncated_marker") {
      if (!in_block) {
        return InvalidArgument("{" + std::string(name) + "}" + where +
                               " is outside the {candidates}...{/candidates} block");
      }
      pieces->push_back({name == "index"  ? Kind::kIndex
                         : name == "text" ? Kind::kText
                                          : Kind::kTruncatedMarker,
                         {}});
      texts += name == "text";
    } else if (name == "candidates") {
      if (section != Section::kHead) {
        return InvalidArgument("second {candidates}" + where + "; use exactly one block");
      }
      section = Section::kCandidate;
      pieces = &t.candidate_;
    } else if (name == "/candidates") {
      if (section != Section::kCandidate) {
        return InvalidArgument("{/candidates}" + where + " without an open {candidates}");
      }
      section = Section::kTail;
      pieces = &t.tail_;
    } else {
      return InvalidArgument("unknown placeholder {" + std::string(name) + "}" + where +
                             "; use {question}, {count}, {candidates}...{/candidates} with "
                             "{index}, {text}, {truncated_marker}, or {{ }} for literal braces");
    }
    i = end + 1;
  }
  if (section == Section::kHead) {
    return InvalidArgument("the aggregation template has no {candidates}...{/candidates} block");
  }
  if (section == Section::kCandidate) {
    return InvalidArgument("the aggregation template's {candidates} block is not closed with "
                           "{/candidates}");
  }
  if (questions == 0) return InvalidArgument("the aggregation template has no {question}");
  if (texts == 0) {
    return InvalidArgument("the aggregation template's {candidates} block has no {text}");
  }
  return t;
}

void AggregationTemplate::RenderPieces(const std::vector<Piece>& pieces, std::string_view question,
                                       size_t count, size_t index,
                                       const AggregationCandidate* candidate, std::string& out) {
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
  RenderPieces(head_, question, candidates.size(), 0, nullptr, out);
  for (size_t i = 0; i < candidates.size(); ++i) {
    RenderPieces(candidate_, question, candidates.size(), i, &candidates[i], out);
  }
  RenderPieces(tail_, question, candidates.size(), 0, nullptr, out);
  return out;
}

}  // namespace zaya
