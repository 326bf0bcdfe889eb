// zaya tokenize: text on stdin -> token ids (JSON array) on stdout.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

int RunTokenize(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    "tokenize",
    "print the token ids of stdin's text as a JSON array",
    "zaya tokenize --model DIR [--no-special] < text\n"
    "  --model DIR     model or tokenizer folder (tokenizer.json [+ tokenizer_config.json])\n"
    "  --no-special    do not apply the post-processor (no BOS); special-token text in the\n"
    "                  input still maps to its id\n"
    "Without --no-special the whole post-processor applies, as in transformers: ZAYA1's\n"
    "appends <end_of_turn>, which a raw prompt sent to zayad does not get (BOS only).",
    RunTokenize,
});

int RunTokenize(const std::vector<std::string>& argv) {
  const Command& self = Registry().at("tokenize");
  std::string error;
  auto args = Args::Parse(argv, {"model"}, {"no-special"}, &error);
  if (!args) return UsageError(self, error);
  if (auto rc = RefusePositionals(
          self, *args, "the text is read from stdin: echo TEXT | zaya tokenize --model DIR"))
    return *rc;
  auto model = args->Get("model");
  if (!model) return UsageError(self, "--model is required");
  auto tok = Tokenizer::Load(*model);
  if (!tok.ok()) {
    std::fprintf(stderr, "zaya tokenize: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  const std::string text((std::istreambuf_iterator<char>(std::cin)),
                         std::istreambuf_iterator<char>());
  auto ids = tok->Encode(
      text, args->Has("no-special") ? Tokenizer::AddSpecial::kNone : Tokenizer::AddSpecial::kAll);
  if (!ids.ok()) {
    std::fprintf(stderr, "zaya tokenize: %s\n", ids.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", nlohmann::json(*ids).dump().c_str());
  return 0;
}

}  // namespace
}  // namespace zaya::cli
