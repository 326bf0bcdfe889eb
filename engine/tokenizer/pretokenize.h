// Internal to zaya_tokenizer: Unicode classes and the pre-tokenizer regexes of well-known
// checkpoints, hand-written so the tokenizer needs no regex engine. Each matcher mirrors one exact
// pattern string from tokenizer.json (alternatives tried in order, like the original regex).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zaya::tokenizer_internal {

bool IsLetter(char32_t c);      // \p{L}
bool IsNumber(char32_t c);      // \p{N}
bool IsWhitespace(char32_t c);  // \s (Unicode White_Space)

enum class RegexKind {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kLlama3,  // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
  kQwen2,   // like kLlama3 with \p{N} instead of \p{N}{1,3}
};

// Recognizes a regex pattern string from tokenizer.json; nullopt when it is not one we implement.
std::optional<RegexKind> RecognizeRegex(std::string_view pattern);

// Splits `text` (valid UTF-8) into [begin, end) byte spans of consecutive regex matches; text
// between matches (never produced by these patterns, which match everything) is not returned.
std::vector<std::pair<size_t, size_t>> FindMatches(RegexKind kind, std::string_view text);

// GPT-2 bytes_to_unicode: the printable code point each byte maps to, and back.
char32_t ByteToUnicode(unsigned char b);
std::optional<unsigned char> UnicodeToByte(char32_t c);

}  // namespace zaya::tokenizer_internal
