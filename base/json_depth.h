// How deeply a JSON text nests, measured before it is parsed.
//
// nlohmann::json copies and compares documents recursively, so a file or message of a few hundred
// kilobytes of '[' can exhaust the stack after a successful parse. Every reader of JSON it did not
// write itself (protocol frames, config.json, safetensors headers, tokenizer files) checks the
// depth first with this scan, which allocates nothing and stops at the first level past the limit.
#pragma once

#include <string_view>

namespace zaya {

// The deepest nesting of arrays and objects outside strings (the top-level value is depth 1), or
// limit + 1 as soon as the text goes deeper than `limit`. Not a validator: malformed text gives a
// number too, and the parser reports what is wrong with it. Pure; thread-safe.
int JsonNestingDepth(std::string_view text, int limit);

}  // namespace zaya
