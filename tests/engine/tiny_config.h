// The engine configuration the engine-level tests share: the tiny f32 fixture on the CPU backend
// with small memory budgets. Tests set the [rsa] fields they exercise themselves. TinyModelCopy
// is for tests that change the fixture's files.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>

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

// A copy of the tiny model in its own temporary folder, removed again on destruction (also when an
// ASSERT returns early), for tests that need its files changed.
class TinyModelCopy {
 public:
  explicit TinyModelCopy(const std::string& tag)
      : dir_(std::filesystem::temp_directory_path() /
             ("zaya-" + tag + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    for (const auto& f : std::filesystem::directory_iterator(TinyEngineConfig().model.path))
      std::filesystem::copy_file(f.path(), dir_ / f.path().filename());
  }
  ~TinyModelCopy() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  TinyModelCopy(const TinyModelCopy&) = delete;
  TinyModelCopy& operator=(const TinyModelCopy&) = delete;

  std::string path() const { return dir_.string(); }

  void EditTokenizerJson(const std::function<void(nlohmann::json&)>& edit) const {
    nlohmann::json t = nlohmann::json::parse(std::ifstream(dir_ / "tokenizer.json"));
    edit(t);
    std::ofstream(dir_ / "tokenizer.json") << t.dump();
  }

 private:
  std::filesystem::path dir_;
};

// ZAYA1's post-processor: [<bos>, $A, <end_of_turn>] (the tiny fixture's has no suffix).
inline void AppendEndOfTurnToPostProcessor(nlohmann::json& tokenizer) {
  nlohmann::json& pp = tokenizer["post_processor"];
  pp["single"].push_back({{"SpecialToken", {{"id", "<end_of_turn>"}, {"type_id", 0}}}});
  pp["special_tokens"]["<end_of_turn>"] = {
      {"id", "<end_of_turn>"}, {"ids", {5}}, {"tokens", {"<end_of_turn>"}}};
}

}  // namespace zaya::testing
