#include "engine/tokenizer/pretokenize.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "engine/tokenizer/utf8.h"

namespace zaya::tokenizer_internal {
namespace {

struct CodeRange {
  char32_t lo, hi;
};
#include "engine/tokenizer/unicode_tables.inc"

template <size_t N>
bool InRanges(const CodeRange (&ranges)[N], char32_t c) {
  auto it = std::upper_bound(std::begin(ranges), std::end(ranges), c,
                             [](char32_t v, const CodeRange& r) { return v < r.lo; });
  if (it == std::begin(ranges)) return false;
  --it;
  return c <= it->hi;
}

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool IsOther(char32_t c) { return !IsWhitespace(c) && !IsLetter(c) && !IsNumber(c); }
bool IsNewline(char32_t c) { return c == '\r' || c == '\n'; }

char32_t Lower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Length in code points of a contraction at i ('s 't 're 've 'm 'll 'd), 0 if none.
size_t Contraction(const std::vector<char32_t>& cps, size_t i, bool ignore_case) {
  if (cps[i] != '\'' || i + 1 >= cps.size()) return 0;
  auto at = [&](size_t k) -> char32_t {
    if (k >= cps.size()) return 0;
    return ignore_case ? Lower(cps[k]) : cps[k];
  };
  const char32_t a = at(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const char32_t b = at(i + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

template <typename Pred>
size_t RunOf(const std::vector<char32_t>& cps, size_t i, Pred pred, size_t max = SIZE_MAX) {
  size_t j = i;
  while (j < cps.size() && j - i < max && pred(cps[j])) ++j;
  return j - i;
}

// \s+(?!\S) then \s+ ; both start at whitespace.
size_t WhitespaceTail(const std::vector<char32_t>& cps, size_t i) {
  const size_t run = RunOf(cps, i, IsWhitespace);
  if (run == 0) return 0;
  if (i + run == cps.size()) return run;  // (?!\S) holds at the end
  return run > 1 ? run - 1 : run;         // backtrack one; a single char falls to \s+
}

size_t MatchGpt2(const std::vector<char32_t>& cps, size_t i) {
  if (size_t n = Contraction(cps, i, false)) return n;
  // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': without the space these never match at a space.
  const size_t k = cps[i] == ' ' ? i + 1 : i;
  if (k < cps.size()) {
    if (size_t n = RunOf(cps, k, IsLetter)) return k - i + n;
    if (size_t n = RunOf(cps, k, IsNumber)) return k - i + n;
    if (size_t n = RunOf(cps, k, IsOther)) return k - i + n;
  }
  return WhitespaceTail(cps, i);
}

size_t MatchLlama3(const std::vector<char32_t>& cps, size_t i, size_t max_digits) {
  if (size_t n = Contraction(cps, i, true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  {
    const char32_t c = cps[i];
    if (!IsNewline(c) && !IsLetter(c) && !IsNumber(c) && i + 1 < cps.size()) {
      if (size_t n = RunOf(cps, i + 1, IsLetter)) return 1 + n;
    }
    if (size_t n = RunOf(cps, i, IsLetter)) return n;
  }
  // \p{N}{1,max}
  if (size_t n = RunOf(cps, i, IsNumber, max_digits)) return n;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  {
    size_t k = i;
    if (cps[k] == ' ' && k + 1 < cps.size() && IsOther(cps[k + 1])) ++k;
    if (size_t n = RunOf(cps, k, IsOther)) {
      k += n;
      k += RunOf(cps, k, IsNewline);
      return k - i;
    }
  }
  // \s*[\r\n]+ : ends right after the last newline inside the whitespace run.
  {
    const size_t run = RunOf(cps, i, IsWhitespace);
    for (size_t j = i + run; j > i; --j) {
      if (IsNewline(cps[j - 1])) return j - i;
    }
  }
  return WhitespaceTail(cps, i);
}

}  // namespace

bool IsLetter(char32_t c) {
  if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
  return InRanges(kLetterRanges, c);
}

bool IsNumber(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return InRanges(kNumberRanges, c);
}

bool IsWhitespace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::optional<RegexKind> RecognizeRegex(std::string_view pattern) {
  if (pattern == kGpt2Pattern) return RegexKind::kGpt2;
  if (pattern == kLlama3Pattern) return RegexKind::kLlama3;
  if (pattern == kQwen2Pattern) return RegexKind::kQwen2;
  return std::nullopt;
}

std::vector<std::pair<size_t, size_t>> FindMatches(RegexKind kind, std::string_view text) {
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;  // byte offset of each code point, plus the end
  cps.reserve(text.size());
  offsets.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    offsets.push_back(i);
    cps.push_back(utf8::DecodeOne(text, i, &len));
    i += len;
  }
  offsets.push_back(text.size());
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < cps.size();) {
    size_t n = 0;
    switch (kind) {
      case RegexKind::kGpt2:
        n = MatchGpt2(cps, i);
        break;
      case RegexKind::kLlama3:
        n = MatchLlama3(cps, i, 3);
        break;
      case RegexKind::kQwen2:
        n = MatchLlama3(cps, i, 1);
        break;
    }
    if (n == 0) n = 1;  // unreachable for these patterns; guarantees progress
    out.emplace_back(offsets[i], offsets[i + n]);
    i += n;
  }
  return out;
}

namespace {
struct ByteMaps {
  std::array<char32_t, 256> to_unicode{};
  ByteMaps() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_unicode[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    }
  }
};
const ByteMaps& Maps() {
  static const ByteMaps maps;
  return maps;
}
}  // namespace

char32_t ByteToUnicode(unsigned char b) { return Maps().to_unicode[b]; }

std::optional<unsigned char> UnicodeToByte(char32_t c) {
  if (c < 256) {
    const bool printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE);
    if (printable) return static_cast<unsigned char>(c);
    return std::nullopt;
  }
  if (c < 256 + 68) {
    for (int b = 0; b < 256; ++b) {
      if (Maps().to_unicode[b] == c) return static_cast<unsigned char>(b);
    }
  }
  return std::nullopt;
}

}  // namespace zaya::tokenizer_internal
