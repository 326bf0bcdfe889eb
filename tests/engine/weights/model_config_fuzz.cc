// libFuzzer target: config.json parsing (both layouts) and the tensor list a config implies.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/weights/checkpoint.h"
#include "engine/weights/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config =
      zaya::ParseZayaConfig(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (config.ok() && config->num_layers <= 64) {
    auto expected = zaya::ExpectedTensors(*config);
    (void)expected;
  }
  return 0;
}
