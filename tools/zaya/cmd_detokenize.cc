// zaya detokenize: a JSON array of token ids on stdin -> text on stdout.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

int RunDetokenize(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    "detokenize",
    "print the text of a JSON array of token ids read from stdin",
    "zaya detokenize --model DIR [--skip-special] < ids.json\n"
    "  --model DIR       model or tokenizer folder (tokenizer.json [+ tokenizer_config.json])\n"
    "  --skip-special    leave special tokens (e.g. <bos>, <end_of_turn>) out of the text",
    RunDetokenize,
});

int RunDetokenize(const std::vector<std::string>& argv) {
  const Command& self = Registry().at("detokenize");
  std::string error;
  auto args = Args::Parse(argv, {"model"}, {"skip-special"}, &error);
  if (!args) return UsageError(self, error);
  if (auto rc = RefusePositionals(self, *args, "the token ids are read from stdin as a JSON array"))
    return *rc;
  auto model = args->Get("model");
  if (!model) return UsageError(self, "--model is required");
  auto tok = Tokenizer::Load(*model);
  if (!tok.ok()) {
    std::fprintf(stderr, "zaya detokenize: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  const nlohmann::json j = nlohmann::json::parse(input, nullptr, false);
  std::vector<int32_t> ids;
  bool valid = j.is_array();
  if (valid) {
    for (const auto& v : j) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok->vocab_size()) {
        valid = false;
        break;
      }
      ids.push_back(v.get<int32_t>());
    }
  }
  if (!valid) {
    std::fprintf(
        stderr,
        "zaya detokenize: stdin must be a JSON array of token ids in [0, %d), e.g. [2, 9259]\n",
        tok->vocab_size());
    return 1;
  }
  const std::string text = tok->Decode(ids, args->Has("skip-special"));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace
}  // namespace zaya::cli
