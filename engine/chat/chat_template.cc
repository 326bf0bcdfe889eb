#include "engine/chat/chat_template.h"

#include <fstream>
#include <sstream>

#include "base/json_depth.h"

namespace zaya {

using nlohmann::json;

namespace {

std::optional<std::string> ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ConfigToken(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  const json& t = config[key];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_object() && t.contains("content") && t["content"].is_string()) {
    return t["content"].get<std::string>();
  }
  return "";
}

}  // namespace

Result<ChatTemplate> ChatTemplate::FromTokenizerConfig(const std::filesystem::path& path_or_dir) {
  std::error_code ec;
  const bool is_dir = std::filesystem::is_directory(path_or_dir, ec);
  const std::filesystem::path file = is_dir ? path_or_dir / "tokenizer_config.json" : path_or_dir;
  const std::filesystem::path dir = is_dir ? path_or_dir : path_or_dir.parent_path();
  auto text = ReadFile(file);
  if (!text) {
    return NotFound("chat template: cannot open " + file.string() +
                    "; pass a model folder that holds tokenizer_config.json");
  }
  // Deeper than any real file, and deep enough to overflow the stack in nlohmann's recursive
  // copies (base/json_depth.h).
  if (JsonNestingDepth(*text, 64) > 64) {
    return InvalidArgument(file.string() + " nests arrays and objects more than 64 levels deep");
  }
  const json config = json::parse(*text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return InvalidArgument(file.string() + " is not a JSON object");
  }
  std::string source;
  const json* t = config.contains("chat_template") ? &config["chat_template"] : nullptr;
  if (t && t->is_string()) {
    source = t->get<std::string>();
  } else if (t && t->is_array()) {
    // Checked field by field: json::value() and get() throw on a wrong type, and nothing above
    // this catches, so a malformed tokenizer_config.json would end the daemon at startup.
    for (size_t i = 0; i < t->size(); ++i) {
      const json& entry = (*t)[i];
      const std::string field = "chat_template[" + std::to_string(i) + "]";
      if (!entry.is_object()) {
        return InvalidArgument(file.string() + ": " + field +
                               " is not an object; each entry needs a string \"name\" and "
                               "\"template\"");
      }
      if (!entry.contains("name") || !entry["name"].is_string()) {
        return InvalidArgument(file.string() + ": " + field +
                               ".name is missing or not a string; each entry needs a string "
                               "\"name\" such as \"default\"");
      }
      if (entry["name"].get_ref<const std::string&>() != "default") continue;
      if (!entry.contains("template") || !entry["template"].is_string()) {
        return InvalidArgument(file.string() + ": " + field +
                               ".template is missing or not a string; it must hold the Jinja "
                               "source of the default chat template");
      }
      source = entry["template"].get<std::string>();
    }
    if (source.empty()) {
      return InvalidArgument(file.string() + ": chat_template list has no \"default\" entry");
    }
  } else if (auto jinja = ReadFile(dir / "chat_template.jinja")) {
    source = std::move(*jinja);
  } else {
    return NotFound(file.string() +
                    " has no chat_template (and there is no chat_template.jinja "
                    "beside it); this model cannot format chat messages");
  }
  auto r = FromString(std::move(source), ConfigToken(config, "bos_token"),
                      ConfigToken(config, "eos_token"));
  if (!r.ok()) return r.status().WithContext(file.string());
  return r;
}

Result<ChatTemplate> ChatTemplate::FromString(std::string source, std::string bos,
                                              std::string eos) {
  auto t = jinja::Template::Parse(source);
  if (!t.ok()) return t.status();
  return ChatTemplate(std::move(t).value(), std::move(source), std::move(bos), std::move(eos));
}

Result<std::string> ChatTemplate::Render(const json& messages, bool add_generation_prompt,
                                         const json& extra_vars) const {
  if (!messages.is_array()) {
    return InvalidArgument("messages must be a JSON array of {\"role\", \"content\"} objects");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return InvalidArgument("messages[" + std::to_string(i) +
                             "] must be an object with a string \"role\"");
    }
  }
  if (!extra_vars.is_null() && !extra_vars.is_object()) {
    return InvalidArgument("extra template variables must be a JSON object");
  }
  json context = {{"messages", messages},
                  {"add_generation_prompt", add_generation_prompt},
                  {"bos_token", bos_},
                  {"eos_token", eos_}};
  if (extra_vars.is_object()) {
    for (const auto& [k, v] : extra_vars.items()) {
      if (k == "messages") return InvalidArgument("extra template variables may not set messages");
      context[k] = v;
    }
  }
  return template_.Render(context);
}

}  // namespace zaya
