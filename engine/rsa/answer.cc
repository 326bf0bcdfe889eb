#include "engine/rsa/answer.h"

#include <cctype>
#include <utility>

namespace zaya {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Content of the brace group opening at text[open] == '{', or nullopt if it never closes.
// A backslash escapes the next character, so \{ and \} do not count as grouping braces.
std::optional<std::string_view> BraceGroup(std::string_view text, size_t open) {
  int depth = 0;
  for (size_t i = open; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\\') {
      ++i;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      return text.substr(open + 1, i - open - 1);
    }
  }
  return std::nullopt;
}

bool ReplaceAll(std::string& s, std::string_view from, std::string_view to) {
  bool any = false;
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
    any = true;
  }
  return any;
}

}  // namespace

std::optional<std::string> ExtractBoxed(std::string_view text) {
  constexpr std::string_view kBoxed = "\\boxed";
  size_t pos = text.rfind(kBoxed);
  while (pos != std::string_view::npos) {
    size_t open = pos + kBoxed.size();
    while (open < text.size() && IsSpace(text[open])) ++open;
    if (open < text.size() && text[open] == '{') {
      if (auto group = BraceGroup(text, open)) return std::string(*group);
    }
    if (pos == 0) break;
    pos = text.rfind(kBoxed, pos - 1);
  }
  return std::nullopt;
}

std::optional<std::string> ExtractAnswerTag(std::string_view text) {
  constexpr std::string_view kOpen = "<answer>";
  constexpr std::string_view kClose = "</answer>";
  const size_t close = text.rfind(kClose);
  if (close == std::string_view::npos) return std::nullopt;
  const size_t open = text.substr(0, close).rfind(kOpen);
  if (open == std::string_view::npos) return std::nullopt;
  return std::string(text.substr(open + kOpen.size(), close - open - kOpen.size()));
}

std::optional<std::string> ExtractLastNumber(std::string_view text) {
  std::optional<std::string> last;
  size_t i = 0;
  const size_t n = text.size();
  auto digits = [&](size_t j, std::string& out) {
    while (j < n && IsDigit(text[j])) out.push_back(text[j++]);
    return j;
  };
  while (i < n) {
    const char c = text[i];
    const bool prev_alnum = i > 0 && IsAlnum(text[i - 1]);
    const bool prev_digit = i > 0 && IsDigit(text[i - 1]);
    const bool starts_digit = IsDigit(c);
    const bool starts_point = c == '.' && !prev_digit && i + 1 < n && IsDigit(text[i + 1]);
    const bool starts_minus = c == '-' && !prev_alnum && i + 1 < n &&
                              (IsDigit(text[i + 1]) ||
                               (text[i + 1] == '.' && i + 2 < n && IsDigit(text[i + 2])));
    if (!starts_digit && !starts_point && !starts_minus) {
      ++i;
      continue;
    }
    std::string num;
    size_t j = i;
    if (starts_minus) {
      num.push_back('-');
      ++j;
    }
    if (text[j] == '.') {
      num.push_back('0');
    } else {
      j = digits(j, num);
      // Thousands separators: ",ddd" not followed by another digit.
      while (j + 3 < n + 0 && text[j] == ',' && IsDigit(text[j + 1]) && IsDigit(text[j + 2]) &&
             IsDigit(text[j + 3]) && (j + 4 >= n || !IsDigit(text[j + 4]))) {
        num.append(text.substr(j + 1, 3));
        j += 4;
      }
    }
    if (j + 1 < n && text[j] == '.' && IsDigit(text[j + 1])) {
      num.push_back('.');
      j = digits(j + 1, num);
    }
    if (j + 1 < n && text[j] == '/' && IsDigit(text[j + 1])) {
      num.push_back('/');
      j = digits(j + 1, num);
    }
    last = std::move(num);
    i = j;
  }
  return last;
}

std::string NormalizeAnswer(std::string_view answer) {
  std::string_view s = Trim(answer);
  // Enclosing math delimiters, possibly nested ("$\(x\)$").
  for (bool changed = true; changed;) {
    changed = false;
    for (auto [open, close] : {std::pair<std::string_view, std::string_view>{"$$", "$$"},
                               {"$", "$"}, {"\\(", "\\)"}, {"\\[", "\\]"}}) {
      if (s.size() >= open.size() + close.size() && s.starts_with(open) && s.ends_with(close)) {
        s = Trim(s.substr(open.size(), s.size() - open.size() - close.size()));
        changed = true;
      }
    }
    while (!s.empty() && s.back() == '.') {
      s = Trim(s.substr(0, s.size() - 1));
      changed = true;
    }
  }
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (IsSpace(s[i])) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
      continue;
    }
    // "1,000" and LaTeX "1{,}000": drop the separator between a digit and exactly three digits.
    const size_t sep = s.substr(i).starts_with("{,}") ? 3 : (s[i] == ',' ? 1 : 0);
    if (sep > 0 && !out.empty() && IsDigit(out.back())) {
      const size_t d = i + sep;
      if (d + 3 <= s.size() && IsDigit(s[d]) && IsDigit(s[d + 1]) && IsDigit(s[d + 2]) &&
          (d + 3 == s.size() || !IsDigit(s[d + 3]))) {
        i += sep - 1;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  ReplaceAll(out, "\\dfrac", "\\frac");
  ReplaceAll(out, "\\tfrac", "\\frac");
  return out;
}

Result<AnswerExtractor> AnswerExtractor::Create(std::string_view kind, std::string_view regex) {
  if (kind == "boxed" || kind == "answer_tag" || kind == "last_number") {
    return AnswerExtractor(std::string(kind), nullptr);
  }
  if (kind != "regex") {
    return InvalidArgument("answer_extractor = \"" + std::string(kind) +
                           "\" is unknown; use \"boxed\", \"answer_tag\", \"last_number\" or "
                           "\"regex\"");
  }
  if (regex.empty()) {
    return InvalidArgument("answer_extractor = \"regex\" needs answer_regex (group 1 = answer)");
  }
  try {
    auto re = std::make_shared<const std::regex>(regex.begin(), regex.end(),
                                                 std::regex::ECMAScript);
    return AnswerExtractor("regex", std::move(re));
  } catch (const std::regex_error& e) {
    return InvalidArgument("answer_regex \"" + std::string(regex) +
                           "\" is not a valid ECMAScript regex: " + e.what());
  }
}

std::optional<std::string> AnswerExtractor::Extract(std::string_view text) const {
  if (kind_ == "boxed") return ExtractBoxed(text);
  if (kind_ == "answer_tag") return ExtractAnswerTag(text);
  if (kind_ == "last_number") return ExtractLastNumber(text);
  if (text.size() > kRegexWindowBytes) {
    size_t start = text.size() - kRegexWindowBytes;
    // Not inside a character: a window opening on its continuation bytes let the pattern return
    // invalid UTF-8 as the answer.
    for (int i = 0; i < 3 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80; ++i) ++start;
    text = text.substr(start);
  }
  try {
    std::optional<std::string> last;
    const size_t group = regex_->mark_count() >= 1 ? 1 : 0;
    for (std::cregex_iterator it(text.data(), text.data() + text.size(), *regex_), end; it != end;
         ++it) {
      // Group 1 of the last match: none when it did not take part in that match. Keeping an
      // earlier match's group answered 5 for (\d+)|none on "... 5 ... none".
      last.reset();
      if ((*it)[group].matched) last = (*it)[group].str();
      if (it->length(0) == 0 && it->position(0) >= static_cast<std::ptrdiff_t>(text.size())) break;
    }
    return last;
  } catch (const std::exception&) {
    return std::nullopt;  // e.g. regex_error(error_complexity): treat as no answer
  }
}

std::optional<std::string> AnswerExtractor::ExtractNormalized(std::string_view text) const {
  std::optional<std::string> raw = Extract(text);
  if (!raw) return std::nullopt;
  std::string norm = NormalizeAnswer(*raw);
  if (norm.empty()) return std::nullopt;
  return norm;
}

}  // namespace zaya
