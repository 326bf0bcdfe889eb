// libFuzzer target for the config parser: arbitrary text must parse or fail with a Status, never
// crash; whatever parses must survive FormatConfig -> ParseConfig unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)zaya::ParseSize(text);
  (void)zaya::ParseDuration(text);
  auto config = zaya::ParseConfig(text, "fuzz.toml");
  if (!config.ok()) return 0;
  auto again = zaya::ParseConfig(zaya::FormatConfig(*config), "fuzz.toml");
  if (!again.ok() || !(*again == *config)) __builtin_trap();
  return 0;
}
