// A Jinja2 subset interpreter, enough for Hugging Face chat templates (Gemma 3, Qwen 3, ZAYA,
// Llama 3 style). Output matches @huggingface/jinja (the JS reference, which matches Python
// Jinja2 as transformers configures it: trim_blocks and lstrip_blocks on, one trailing newline of
// the template dropped).
//
// Supported: {{ }}, {% %}, {# #}, whitespace control (-), if/elif/else, for (with tuple
// unpacking, loop.index/index0/first/last/length/revindex/revindex0, else, break/continue),
// set (name, ns.attr, block form), literals (str, int, float, bool, none, list, dict, tuple),
// operators (+ - * / // % ** ~, comparisons, in / not in, and/or/not, x if c else y), indexing,
// slicing ([a:b:c]), attribute access, filters (trim, length/count, default/d, upper, lower,
// capitalize, title, tojson, join, replace, first, last, string, safe, list, reverse, int, float,
// abs, items, map(attribute=), selectattr, rejectattr, unique, sort, indent, wordcount),
// tests (defined, undefined, none, string, number, integer, float, boolean, mapping, iterable,
// sequence, equalto/eq/==, ne, sameas, true, false, odd, even, divisibleby, in, lower, upper,
// gt/ge/lt/le), globals raise_exception(msg), namespace(...), range(...), strftime_now(fmt), and
// the common str/dict/list methods (strip, lstrip, rstrip, split, startswith, endswith, upper,
// lower, replace, title, format is not; get, items, keys, values).
// Anything else (macro, call, include, an unknown filter/test/function/method) is a parse error
// naming the construct and its line, so an unsupported template fails at load, not at render.
//
// Thread safety: a parsed Template is immutable; Render may be called concurrently.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"

namespace zaya::jinja {

struct Program;

class Template {
 public:
  // Parses `source`. Errors name the line (1-based) and the construct.
  static Result<Template> Parse(std::string_view source);

  // Renders with `context` (a JSON object of top-level variables). raise_exception(msg) and
  // runtime type errors come back as kInvalidArgument whose message contains msg.
  Result<std::string> Render(const nlohmann::json& context) const;

 private:
  explicit Template(std::shared_ptr<const Program> p) : program_(std::move(p)) {}
  std::shared_ptr<const Program> program_;
};

}  // namespace zaya::jinja
