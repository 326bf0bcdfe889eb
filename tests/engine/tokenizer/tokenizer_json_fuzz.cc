// Feeds arbitrary bytes as tokenizer.json; a loaded tokenizer then encodes and decodes a fixed
// string. Any crash, sanitizer report or uncaught exception is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  auto tok = zaya::Tokenizer::FromJson(json);
  if (!tok.ok()) return 0;
  auto ids = tok->Encode("Hello, world! \xff <s> \xe2\x96\x81 12345 \n\t\xf0\x9f\xa4\x96",
                         zaya::Tokenizer::AddSpecial::kAll);
  if (ids.ok()) {
    (void)tok->Decode(*ids, false);
    zaya::Tokenizer::StreamDecoder sd(*tok, true);
    for (int32_t id : *ids) (void)sd.Push(id);
    (void)sd.Flush();
  }
  return 0;
}
