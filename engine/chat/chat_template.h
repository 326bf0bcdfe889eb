// ChatTemplate: renders chat messages into a prompt string with a model's Jinja chat template, as
// transformers' apply_chat_template(tokenize=False) does. The result is tokenized with
// Tokenizer::Encode(prompt, /*add_special_tokens=*/false): the template already writes bos_token.
//
// The template is parsed at load, so an unsupported construct fails there (see jinja.h).
//
// Thread safety: immutable after construction; Render may be called concurrently.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "engine/chat/jinja.h"

namespace zaya {

class ChatTemplate {
 public:
  // `path_or_dir`: a tokenizer_config.json, or a folder holding one. Its "chat_template" (a string,
  // or a list of {name, template} where "default" is used) is the template; without one, the
  // folder's chat_template.jinja. bos_token / eos_token come from the same config.
  static Result<ChatTemplate> FromTokenizerConfig(const std::filesystem::path& path_or_dir);

  static Result<ChatTemplate> FromString(std::string source, std::string bos, std::string eos);

  // `messages`: [{"role": ..., "content": ...}, ...]. `extra_vars` (a JSON object or null) adds
  // template variables such as {"enable_thinking": false}; they may not replace `messages`.
  // Errors: malformed messages, raise_exception() in the template, runtime type errors.
  Result<std::string> Render(const nlohmann::json& messages, bool add_generation_prompt,
                             const nlohmann::json& extra_vars = nullptr) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  ChatTemplate(jinja::Template t, std::string source, std::string bos, std::string eos)
      : template_(std::move(t)),
        source_(std::move(source)),
        bos_(std::move(bos)),
        eos_(std::move(eos)) {}

  jinja::Template template_;
  std::string source_;
  std::string bos_, eos_;
};

}  // namespace zaya
