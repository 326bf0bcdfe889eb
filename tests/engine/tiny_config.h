// The engine configuration the engine-level tests share: the tiny f32 fixture on the CPU backend
// with small memory budgets. Tests set the [rsa] fields they exercise themselves.
#pragma once

#include <string>

#include "config/config.h"

namespace zaya::testing {

inline Config TinyEngineConfig() {
  Config c;
  c.model.path = std::string(ZAYA_SOURCE_DIR) + "/tests/data/tiny-zaya/native-f32";
  c.model.weights_dtype = "f32";
  c.backend.threads = 2;
  c.memory.weights = 64ull << 20;
  c.memory.state = 16ull << 20;
  c.memory.request = 16ull << 20;
  c.memory.kv_block_tokens = 16;
  c.scheduler.max_running_sequences = 40;
  return c;
}

}  // namespace zaya::testing
