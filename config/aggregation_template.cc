#include "config/aggregation_template.h"

#include <cctype>

namespace zaya {
namespace {

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '/';
}

}  // namespace

Result<AggregationTemplateParts> ParseAggregationTemplate(std::string_view text) {
  using Kind = AggregationTemplatePiece::Kind;
  AggregationTemplateParts t;
  enum class Section { kHead, kCandidate, kTail } section = Section::kHead;
  std::vector<AggregationTemplatePiece>* pieces = &t.head;
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
      pieces = &t.candidate;
    } else if (name == "/candidates") {
      if (section != Section::kCandidate) {
        return InvalidArgument("{/candidates}" + where + " without an open {candidates}");
      }
      section = Section::kTail;
      pieces = &t.tail;
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
    return InvalidArgument(
        "the aggregation template's {candidates} block is not closed with "
        "{/candidates}");
  }
  if (questions == 0) return InvalidArgument("the aggregation template has no {question}");
  if (texts == 0) {
    return InvalidArgument("the aggregation template's {candidates} block has no {text}");
  }
  return t;
}

}  // namespace zaya
