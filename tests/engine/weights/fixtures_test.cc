// The committed tiny-zaya fixtures are self-consistent: golden files match their checkpoints'
// dimensions, and config.json token ids match the bundled tokenizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/weights/checkpoint.h"
#include "tests/engine/weights/test_util.h"

namespace zaya {
namespace {

using nlohmann::json;

TEST(FixturesTest, GoldenFilesMatchTheirCheckpoints) {
  for (const char* name : {"native-f32", "native-bf16"}) {
    SCOPED_TRACE(name);
    const std::string golden_dir = testing::TinyDir("golden");
    const json meta = json::parse(testing::ReadBytes(golden_dir + "/" + name + ".json"));
    auto ckpt = Checkpoint::Open(testing::TinyDir(name));
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    const ZayaConfig& c = (*ckpt)->config();
    const auto ids = meta.at("input_ids").get<std::vector<int64_t>>();
    ASSERT_EQ(ids.size(), 24u);
    EXPECT_EQ(ids[0], c.bos_token_id);
    for (int64_t id : ids) EXPECT_LT(id, c.vocab_size);
    EXPECT_EQ(meta.at("logits_shape"), json({24, c.vocab_size}));
    const std::string logits =
        testing::ReadBytes(golden_dir + "/" + meta.at("logits_file").get<std::string>());
    EXPECT_EQ(logits.size(), ids.size() * static_cast<size_t>(c.vocab_size) * 4);
    const auto experts = meta.at("experts").get<std::vector<std::vector<int64_t>>>();
    ASSERT_EQ(static_cast<int64_t>(experts.size()), c.num_layers);
    bool skip_seen = false;
    for (const auto& layer : experts) {
      ASSERT_EQ(layer.size(), ids.size());
      for (int64_t e : layer) {
        EXPECT_GE(e, 0);
        EXPECT_LE(e, c.num_experts);
        skip_seen = skip_seen || e == c.num_experts;
      }
    }
    EXPECT_TRUE(skip_seen) << "the fixture should exercise the skip expert";
    const auto greedy = meta.at("greedy_tokens").get<std::vector<int64_t>>();
    EXPECT_EQ(greedy.size(), 64u);
    for (int64_t t : greedy) EXPECT_LT(t, c.vocab_size);
    EXPECT_LT(meta.at("cached_vs_full_max_abs_diff").get<double>(), 1e-4);
  }
}

TEST(FixturesTest, ConfigTokenIdsMatchTheTokenizer) {
  for (const char* name : {"native-f32", "native-bf16", "legacy-bf16"}) {
    SCOPED_TRACE(name);
    const std::string dir = testing::TinyDir(name);
    auto config = LoadZayaConfig(dir + "/config.json");
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    const json tok = json::parse(testing::ReadBytes(dir + "/tokenizer.json"));
    const json tok_config = json::parse(testing::ReadBytes(dir + "/tokenizer_config.json"));
    const json& vocab = tok.at("model").at("vocab");
    EXPECT_EQ(static_cast<int64_t>(vocab.size()), config->vocab_size);
    EXPECT_EQ(vocab.at("<bos>"), config->bos_token_id);
    EXPECT_EQ(vocab.at("<pad>"), config->pad_token_id);
    EXPECT_EQ(vocab.at(tok_config.at("eos_token").get<std::string>()), config->eos_token_ids[0]);
    EXPECT_EQ(vocab.at("<eos>"), config->eos_token_ids[1]);
    EXPECT_TRUE(tok.at("model").at("byte_fallback").get<bool>());
    EXPECT_EQ(vocab.at("<0x00>").get<int>() + 255, vocab.at("<0xFF>").get<int>());
    for (const char* special : {"<start_of_turn>", "<end_of_turn>", "<think>", "</think>"}) {
      bool found = false;
      for (const json& t : tok.at("added_tokens")) {
        found = found || (t.at("content") == special && t.at("special") == true);
      }
      EXPECT_TRUE(found) << special;
    }
  }
}

}  // namespace
}  // namespace zaya
