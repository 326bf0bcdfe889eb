#include "engine/weights/model_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/engine/weights/test_util.h"

namespace zaya {
namespace {

using nlohmann::json;

// The published ZAYA1-8B config.json (native layout), including the hub's quirk of a top-level
// rope_type next to the nested per-layer-type parameters.
json Zaya8BNative() {
  return json::parse(R"({
    "architectures": ["ZayaForCausalLM"], "model_type": "zaya", "vocab_size": 262272,
    "hidden_size": 2048, "num_hidden_layers": 40, "num_attention_heads": 8,
    "num_key_value_heads": 2, "head_dim": 128, "hidden_act": "silu", "num_experts": 16,
    "num_experts_per_tok": 1, "moe_intermediate_size": 2048, "router_hidden_size": 256,
    "rms_norm_eps": 1e-05, "cca_time0": 2, "cca_time1": 2, "attention_bias": false,
    "lm_head_bias": false, "tie_word_embeddings": true, "max_position_embeddings": 131072,
    "rope_parameters": {"rope_type": "default",
      "hybrid": {"rope_type": "default", "rope_theta": 5000000.0, "partial_rotary_factor": 0.5},
      "hybrid_sliding": {"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.5}},
    "sliding_window": null, "bos_token_id": 2, "eos_token_id": 106, "pad_token_id": 0,
    "torch_dtype": "bfloat16"})");
}

json Zaya8BLegacy() {
  return json::parse(R"({
    "architectures": ["ZayaForCausalLM"], "model_type": "zaya", "vocab_size": 262272,
    "hidden_size": 2048, "num_hidden_layers": 80, "num_attention_heads": 8,
    "num_query_groups": 2, "kv_channels": 128, "num_experts": 16, "moe_router_topk": 1,
    "ffn_hidden_size": 4096, "zaya_mlp_expansion": 256, "zaya_use_mod": true,
    "zaya_use_eda": true, "scale_residual_merge": true, "norm_epsilon": 1e-05,
    "activation_func": "swiglu", "normalization": "RMSNorm", "cca_time0": 2, "cca_time1": 2,
    "rope_theta": 5000000, "max_position_embeddings": 131072, "tie_word_embeddings": true,
    "bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0})");
}

Result<ZayaConfig> Parse(const json& j) { return ParseZayaConfig(j.dump(), "config.json"); }

void ExpectZaya8B(const ZayaConfig& c) {
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_layers, 40);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 262272);
  EXPECT_EQ(c.num_experts, 16);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.router_hidden_size, 256);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e6);
  EXPECT_EQ(c.rope_dims, 64);
  EXPECT_EQ(c.cca_time0, 2);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.conv_channels(), 1280);
  EXPECT_EQ(c.heads_per_kv_head(), 4);
  EXPECT_EQ(c.num_router_classes(), 17);
}

TEST(ModelConfigTest, NativeZaya1_8B) {
  auto c = Parse(Zaya8BNative());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->layout, CheckpointLayout::kNative);
  ExpectZaya8B(*c);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{106}));
}

TEST(ModelConfigTest, LegacyZaya1_8B) {
  auto c = Parse(Zaya8BLegacy());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->layout, CheckpointLayout::kLegacy);
  ExpectZaya8B(*c);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{1, 106}));
}

TEST(ModelConfigTest, NativeDefaultsAndFlatRope) {
  json j = Zaya8BNative();
  for (const char* key : {"rms_norm_eps", "cca_time0", "cca_time1", "router_hidden_size",
                          "tie_word_embeddings", "max_position_embeddings", "bos_token_id"}) {
    j.erase(key);
  }
  j["rope_parameters"] = {
      {"rope_type", "default"}, {"rope_theta", 1e4}, {"partial_rotary_factor", 0.25}};
  auto c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e4);
  EXPECT_EQ(c->rope_dims, 32);
  EXPECT_EQ(c->router_hidden_size, 256);
  EXPECT_EQ(c->bos_token_id, -1);
  j.erase("rope_parameters");
  j["rope_theta"] = 2e6;
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->rope_theta, 2e6);
  EXPECT_EQ(c->rope_dims, 64);
}

TEST(ModelConfigTest, TinyFixturesParse) {
  for (const char* name : {"native-f32", "native-bf16", "legacy-bf16"}) {
    auto c = LoadZayaConfig(testing::TinyDir(name) + "/config.json");
    ASSERT_TRUE(c.ok()) << name << ": " << c.status().ToString();
    EXPECT_EQ(c->num_layers, 2) << name;
    EXPECT_EQ(c->vocab_size, 512) << name;
    EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{5, 1})) << name;
  }
}

struct BadConfig {
  const char* label;
  bool legacy;
  std::function<void(json&)> edit;
  const char* needle;
};

TEST(ModelConfigTest, BadConfigsGiveClearErrors) {
  const BadConfig cases[] = {
      {"unknown model type", false, [](json& j) { j["model_type"] = "llama"; },
       "\"model_type\" is \"llama\""},
      {"no model type", false, [](json& j) { j.erase("model_type"); }, "no \"model_type\""},
      {"missing hidden size", false, [](json& j) { j.erase("hidden_size"); },
       "\"hidden_size\" is missing"},
      {"string hidden size", false, [](json& j) { j["hidden_size"] = "2048"; },
       "\"hidden_size\" must be an integer"},
      {"float layers", false, [](json& j) { j["num_hidden_layers"] = 40.5; },
       "\"num_hidden_layers\" must be an integer"},
      {"zero heads", false, [](json& j) { j["num_attention_heads"] = 0; },
       "\"num_attention_heads\" must be positive"},
      {"negative vocab", false, [](json& j) { j["vocab_size"] = -1; },
       "\"vocab_size\" must be positive"},
      {"absurd vocab", false, [](json& j) { j["vocab_size"] = int64_t{1} << 40; },
       "above the supported maximum"},
      {"kv heads do not divide", false, [](json& j) { j["num_key_value_heads"] = 3; },
       "must be a multiple of the KV head count (3)"},
      {"cca time 3", false, [](json& j) { j["cca_time0"] = 3; }, "conv kernel sizes 2/2 only"},
      {"top-2", false, [](json& j) { j["num_experts_per_tok"] = 2; }, "top-1 routing"},
      {"sliding layers", false,
       [](json& j) {
         j["layer_types"] = json::array();
         for (int i = 0; i < 40; ++i)
           j["layer_types"].push_back(i % 2 ? "hybrid" : "hybrid_sliding");
       },
       "no sliding window"},
      {"layer types length", false, [](json& j) { j["layer_types"] = {"hybrid"}; },
       "list of num_hidden_layers (40)"},
      {"odd head dim", false, [](json& j) { j["head_dim"] = 127; }, "\"head_dim\" must be even"},
      {"rope type", false, [](json& j) { j["rope_parameters"]["hybrid"]["rope_type"] = "yarn"; },
       "rope_type must be \"default\""},
      {"rotary factor", false,
       [](json& j) { j["rope_parameters"]["hybrid"]["partial_rotary_factor"] = 1.5; },
       "must be in (0, 1]"},
      {"eos outside vocab", false, [](json& j) { j["eos_token_id"] = 262272; },
       "outside the vocabulary"},
      {"eos wrong type", false, [](json& j) { j["eos_token_id"] = "106"; }, "must be a token id"},
      {"tie is string", false, [](json& j) { j["tie_word_embeddings"] = "yes"; },
       "must be true or false"},
      {"attention bias", false, [](json& j) { j["attention_bias"] = true; }, "no bias"},
      {"gelu experts", false, [](json& j) { j["hidden_act"] = "gelu"; }, "\"silu\""},
      {"eps zero", false, [](json& j) { j["rms_norm_eps"] = 0; }, "rms_norm_eps"},
      {"legacy odd half layers", true, [](json& j) { j["num_hidden_layers"] = 79; },
       "must be even"},
      {"legacy odd ffn", true, [](json& j) { j["ffn_hidden_size"] = 4095; }, "must be even"},
      {"legacy no mod", true, [](json& j) { j["zaya_use_mod"] = false; }, "skip expert"},
      {"legacy kv_channels vs head_dim", true, [](json& j) { j["head_dim"] = 64; }, "disagree"},
      {"legacy swa", true,
       [](json& j) {
         j["swa_layers"] = {0, 128};
       },
       "sliding-window"},
      {"legacy no kv heads", true, [](json& j) { j.erase("num_query_groups"); },
       "\"num_key_value_heads\" is missing"},
  };
  for (const BadConfig& b : cases) {
    SCOPED_TRACE(b.label);
    json j = b.legacy ? Zaya8BLegacy() : Zaya8BNative();
    b.edit(j);
    auto c = Parse(j);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(c.status().message().rfind("config.json: ", 0), 0u) << c.status().message();
    EXPECT_NE(c.status().message().find(b.needle), std::string::npos) << c.status().message();
  }
}

TEST(ModelConfigTest, MalformedJson) {
  for (const char* text : {"", "{", "[1,2]", "\"zaya\"", "{\"model_type\": \"zaya\",}"}) {
    auto c = ParseZayaConfig(text, "config.json");
    EXPECT_FALSE(c.ok()) << text;
  }
  std::string deep(100, '[');
  EXPECT_FALSE(ParseZayaConfig(deep, "config.json").ok());
}

TEST(ModelConfigTest, MissingFileIsNotFound) {
  auto c = LoadZayaConfig("/nonexistent/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace zaya
