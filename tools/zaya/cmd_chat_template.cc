// zaya chat-template: chat messages (JSON) on stdin -> the rendered prompt on stdout.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/chat/chat_template.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

int RunChatTemplate(const std::vector<std::string>& argv);

const CommandRegistrar kRegistrar({
    "chat-template",
    "render chat messages from stdin with the model's chat template",
    "zaya chat-template --model DIR [--no-generation-prompt] [--no-thinking] < messages.json\n"
    "  --model DIR               model or tokenizer folder (tokenizer_config.json with "
    "chat_template)\n"
    "  --no-generation-prompt    do not open the assistant's turn at the end\n"
    "  --no-thinking             render with enable_thinking=false\n"
    "stdin: [{\"role\": \"user\", \"content\": \"...\"}, ...] or {\"messages\": [...]}",
    RunChatTemplate,
});

int RunChatTemplate(const std::vector<std::string>& argv) {
  const Command& self = Registry().at("chat-template");
  std::string error;
  auto args = Args::Parse(argv, {"model"}, {"no-generation-prompt", "no-thinking"}, &error);
  if (!args) return UsageError(self, error);
  if (auto rc = RefusePositionals(self, *args, "the messages are read from stdin as JSON"))
    return *rc;
  auto model = args->Get("model");
  if (!model) return UsageError(self, "--model is required");
  auto tmpl = ChatTemplate::FromTokenizerConfig(*model);
  if (!tmpl.ok()) {
    std::fprintf(stderr, "zaya chat-template: %s\n", tmpl.status().ToString().c_str());
    return 1;
  }
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  nlohmann::json j = nlohmann::json::parse(input, nullptr, false);
  if (j.is_object() && j.contains("messages")) j = j["messages"];
  if (j.is_discarded() || !j.is_array()) {
    std::fprintf(stderr,
                 "zaya chat-template: stdin must be a JSON array of messages, e.g. "
                 "[{\"role\": \"user\", \"content\": \"Hi\"}]\n");
    return 1;
  }
  nlohmann::json extra = nlohmann::json::object();
  if (args->Has("no-thinking")) extra["enable_thinking"] = false;
  auto out = tmpl->Render(j, !args->Has("no-generation-prompt"), extra);
  if (!out.ok()) {
    std::fprintf(stderr, "zaya chat-template: %s\n", out.status().ToString().c_str());
    return 1;
  }
  std::fwrite(out->data(), 1, out->size(), stdout);
  return 0;
}

}  // namespace
}  // namespace zaya::cli
