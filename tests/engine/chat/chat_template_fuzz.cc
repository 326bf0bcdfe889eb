// Feeds arbitrary bytes as a Jinja chat template; a template that parses is rendered once with a
// small conversation. Any crash, sanitizer report or uncaught exception is a finding.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/chat/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // keeps renders (loops over range()) short
  auto t = zaya::ChatTemplate::FromString(std::string(reinterpret_cast<const char*>(data), size),
                                          "<bos>", "<eos>");
  if (!t.ok()) return 0;
  static const nlohmann::json kMessages =
      nlohmann::json::parse(R"([{"role":"system","content":"s"},{"role":"user","content":"Hi"},)"
                            R"({"role":"assistant","content":"<think>x</think>ok"}])");
  (void)t->Render(kMessages, true, {{"enable_thinking", false}});
  return 0;
}
