// UTF-8 helpers shared by the tokenizer and the stream decoder.
//
// Invalid UTF-8 policy (the one the JS reference implies, since a JS string read from bytes goes
// through the WHATWG TextDecoder): every maximal ill-formed subsequence becomes U+FFFD. Encode()
// sanitizes its input this way, and Decode() sanitizes the bytes that byte-fallback tokens produce.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace zaya::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// Decodes one code point at s[i]. On a well-formed sequence sets *len to its length and returns the
// code point; on an ill-formed one returns kReplacement with *len = length of the maximal subpart
// (>= 1), as the WHATWG decoder does.
char32_t DecodeOne(std::string_view s, size_t i, size_t* len);

// Length (0..3) of an incomplete but so far well-formed sequence at the end of `s`: bytes that a
// following chunk could still complete. 0 when `s` ends on a boundary or with an ill-formed byte.
size_t IncompleteTailLength(std::string_view s);

bool IsValid(std::string_view s);

// Returns `s` with every maximal ill-formed subsequence replaced by U+FFFD.
std::string Sanitize(std::string_view s);

void Append(std::string* out, char32_t cp);

}  // namespace zaya::utf8
