// The forward pass against transformers' own ZayaForCausalLM (transformers 5.17, torch 2.11), not
// against our reading of it: tests/data/hf-golden/ holds a tiny random checkpoint that transformers
// built and saved with save_pretrained, its logits at every position of a 31-token input and its
// greedy continuation with its own cache (tools/reference/make_hf_golden.py, run on the GPU
// machine of this workplace; docs/model-files.md "Golden data").
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "engine/model/zaya_model.h"
#include "engine/weights/checkpoint.h"
#include "plugins/loader.h"
#include "tests/engine/model/greedy_decode.h"

namespace zaya {
namespace {

const std::string kDir = std::string(ZAYA_SOURCE_DIR) + "/tests/data/hf-golden/";

class HfGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream f(kDir + "golden.json");
    ASSERT_TRUE(f.good());
    golden_ = nlohmann::json::parse(f);
    // The checkpoint exactly as transformers wrote it: its config.json (nested rope_parameters,
    // layer_types, dtype, ...) and safetensors must load without edits.
    auto ck = Checkpoint::Open(kDir + "checkpoint");
    ASSERT_TRUE(ck.ok()) << ck.status().ToString();
    checkpoint_ = std::move(*ck);
    auto be = Backend::Open("cpu", "", 0, 2);
    ASSERT_TRUE(be.ok()) << be.status().ToString();
    backend_ = std::move(*be);
    ModelOptions mo;
    mo.weights_dtype = "f32";
    mo.kv_dtype = "f32";
    mo.block_tokens = 8;
    mo.num_kv_blocks = 16;
    mo.num_slots = 2;
    mo.max_step_tokens = 64;
    mo.max_step_sequences = 2;
    mo.max_blocks_per_sequence = 16;
    auto m = ZayaModel::Load(*checkpoint_, *backend_, mo);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(*m);
    table_.resize(16);
    std::iota(table_.begin(), table_.end(), 0);
  }

  void TearDown() override {
    model_.reset();  // its buffers go before the backend that owns them
    backend_.reset();
  }

  nlohmann::json golden_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ZayaModel> model_;
  std::vector<int32_t> table_;
};

TEST_F(HfGoldenTest, LogitsAtEveryPositionMatchTransformers) {
  const auto ids = golden_["input_ids"].get<std::vector<int32_t>>();
  const auto want = golden_["logits"].get<std::vector<std::vector<float>>>();
  ASSERT_EQ(want.size(), ids.size());
  // One token per step through the cache, so every position's logits come back.
  double worst = 0, rms = 0;
  size_t n = 0;
  std::vector<float> l;
  for (size_t i = 0; i < ids.size(); ++i) {
    StepSequence s;
    s.slot = 0;
    s.tokens = std::span<const int32_t>(&ids[i], 1);
    s.start_pos = static_cast<int32_t>(i);
    s.block_table = table_;
    ASSERT_TRUE(model_->Forward(std::span<const StepSequence>(&s, 1), &l).ok());
    ASSERT_EQ(l.size(), want[i].size());
    for (size_t v = 0; v < l.size(); ++v) {
      worst = std::max(worst, static_cast<double>(std::fabs(l[v] - want[i][v])));
      rms += static_cast<double>(want[i][v]) * want[i][v];
      ++n;
    }
    EXPECT_EQ(std::max_element(l.begin(), l.end()) - l.begin(), golden_["argmax"][i].get<int>())
        << "position " << i;
  }
  // Both sides compute in f32; measured 1.7e-6 (logits rms ~1.2).
  EXPECT_LE(worst, 1e-4) << "logits rms " << std::sqrt(rms / static_cast<double>(n));
}

TEST_F(HfGoldenTest, GreedyContinuationMatchesTransformersCachedDecode) {
  const auto ids = golden_["input_ids"].get<std::vector<int32_t>>();
  const auto want = golden_["greedy"].get<std::vector<int32_t>>();
  ASSERT_TRUE(golden_["greedy_full_forward_agrees"].get<bool>());
  auto got = testing::GreedyDecode(*model_, ids, want.size(), 1, table_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, want);
}

}  // namespace
}  // namespace zaya
