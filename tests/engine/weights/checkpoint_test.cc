#include "engine/weights/checkpoint.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/engine/weights/test_util.h"

namespace zaya {
namespace {

using testing::TempDir;
using testing::TinyDir;
namespace fs = std::filesystem;

TEST(CheckpointTest, OpensNativeTinyCheckpoint) {
  auto ckpt = Checkpoint::Open(TinyDir("native-f32"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  const ZayaConfig& c = (*ckpt)->config();
  EXPECT_EQ(c.layout, CheckpointLayout::kNative);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.rope_dims, 8);
  // 4 globals + 32 per layer - 1 (no router_states_scale in layer 0).
  EXPECT_EQ((*ckpt)->size(), 4u + 2 * 32 - 1);
  const TensorView* gu = (*ckpt)->Find("model.layers.1.mlp.experts.gate_up_proj");
  ASSERT_NE(gu, nullptr);
  EXPECT_EQ(gu->shape, (std::vector<int64_t>{4, 64, 64}));
  EXPECT_EQ(gu->dtype, DType::kF32);
  EXPECT_EQ((*ckpt)->Find("model.layers.0.mlp.gate.router_states_scale"), nullptr);
  EXPECT_NE((*ckpt)->Find("model.layers.1.mlp.gate.router_states_scale"), nullptr);
  const TensorView* bias = (*ckpt)->Find("model.layers.0.mlp.gate.balancing_biases");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->dtype, DType::kF32);
  EXPECT_TRUE((*ckpt)->LayersWithUnreachableSkipExpert().empty());
}

TEST(CheckpointTest, ExpectedTensorCountMatchesZaya1_8B) {
  ZayaConfig c;
  c.hidden_size = 2048;
  c.num_layers = 40;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.vocab_size = 262272;
  c.num_experts = 16;
  c.moe_intermediate_size = 2048;
  c.router_hidden_size = 256;
  auto expected = ExpectedTensors(c);
  EXPECT_EQ(expected.size(), 1283u);
  uint64_t params = 0;
  for (const auto& t : expected) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    params += n;
  }
  // 8.84B parameters (ZAYA1.md).
  EXPECT_NEAR(static_cast<double>(params) / 1e9, 8.84, 0.01);
}

TEST(CheckpointTest, LegacyLoadsToByteIdenticalNativeTensors) {
  auto native = Checkpoint::Open(TinyDir("native-bf16"));
  ASSERT_TRUE(native.ok()) << native.status().ToString();
  auto legacy = Checkpoint::Open(TinyDir("legacy-bf16"));
  ASSERT_TRUE(legacy.ok()) << legacy.status().ToString();
  EXPECT_EQ((*legacy)->config().layout, CheckpointLayout::kLegacy);
  EXPECT_EQ((*legacy)->config().num_layers, 2);
  EXPECT_EQ((*legacy)->config().moe_intermediate_size, 32);
  EXPECT_EQ((*legacy)->config().router_hidden_size, 16);
  auto a = (*native)->Tensors();
  auto b = (*legacy)->Tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i]->name);
    EXPECT_EQ(a[i]->name, b[i]->name);
    EXPECT_EQ(a[i]->dtype, b[i]->dtype);
    EXPECT_EQ(a[i]->shape, b[i]->shape);
    ASSERT_EQ(a[i]->nbytes, b[i]->nbytes);
    EXPECT_EQ(std::memcmp(a[i]->data, b[i]->data, a[i]->nbytes), 0);
  }
}

TEST(CheckpointTest, LegacyNameTranslation) {
  struct Case {
    const char* legacy;
    const char* native;
  };
  const Case cases[] = {
      {"model.final_norm.weight", "model.norm.weight"},
      {"model.embed_tokens.weight", "model.embed_tokens.weight"},
      {"model.layers.0.res_scale.hidden_states_scale", "model.input_hidden_states_scale"},
      {"model.layers.0.res_scale.hidden_states_bias", "model.input_hidden_states_bias"},
      {"model.layers.1.res_scale.residual_bias",
       "model.layers.0.post_attention_residual_scale.residual_bias"},
      {"model.layers.2.res_scale.hidden_states_scale",
       "model.layers.0.post_mlp_residual_scale.hidden_states_scale"},
      {"model.res_scale.residual_scale", "model.layers.39.post_mlp_residual_scale.residual_scale"},
      {"model.layers.4.self_attn.qkv.linear_q.weight",
       "model.layers.2.self_attn.qkv_proj.q_proj.weight"},
      {"model.layers.4.self_attn.qkv.val_proj2.weight",
       "model.layers.2.self_attn.qkv_proj.v_proj_delayed.weight"},
      {"model.layers.78.self_attn.qkv.conv_qk.1.bias",
       "model.layers.39.self_attn.qkv_proj.conv_qk_grouped.bias"},
      {"model.layers.4.self_attn.qkv.temp", "model.layers.2.self_attn.qk_norm.temp"},
      {"model.layers.4.input_norm.weight", "model.layers.2.input_layernorm.weight"},
      {"model.layers.5.input_norm.weight", "model.layers.2.post_attention_layernorm.weight"},
      {"model.layers.5.zaya_block.router.rmsnorm_eda.weight",
       "model.layers.2.mlp.gate.router_mlp.norm.weight"},
      {"model.layers.5.zaya_block.router.router_mlp.4.weight",
       "model.layers.2.mlp.gate.router_mlp.out_proj.weight"},
      {"model.layers.5.zaya_block.router.balancing_biases",
       "model.layers.2.mlp.gate.balancing_biases"},
  };
  for (const Case& c : cases) {
    auto got = LegacyToNativeName(c.legacy, 40);
    ASSERT_TRUE(got.ok()) << c.legacy << ": " << got.status().ToString();
    EXPECT_EQ(*got, c.native) << c.legacy;
  }
  for (const char* bad :
       {"model.layers.80.input_norm.weight", "model.layers.0.res_scale.residual_scale",
        "model.layers.5.self_attn.qkv.linear_q.weight", "model.layers.x.input_norm.weight",
        "model.layers.01.input_norm.weight", "something.else"}) {
    EXPECT_FALSE(LegacyToNativeName(bad, 40).ok()) << bad;
  }
  std::string native;
  int64_t expert = -1;
  EXPECT_TRUE(ParseLegacyExpertName(
      "model.layers.7.zaya_block.experts.local_experts.11.linear_fc1.weight", &native, &expert));
  EXPECT_EQ(native, "model.layers.3.mlp.experts.gate_up_proj");
  EXPECT_EQ(expert, 11);
  EXPECT_TRUE(ParseLegacyExpertName(
      "model.layers.7.zaya_block.experts.local_experts.0.linear_fc2.weight", &native, &expert));
  EXPECT_EQ(native, "model.layers.3.mlp.experts.down_proj");
  EXPECT_FALSE(ParseLegacyExpertName(
      "model.layers.6.zaya_block.experts.local_experts.0.linear_fc2.weight", &native, &expert));
}

TEST(CheckpointTest, ResidentBytesCountsMatricesAtTargetAndVectorsInF32) {
  auto ckpt = Checkpoint::Open(TinyDir("native-f32"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  uint64_t matrices = 0, vectors = 0;
  for (const TensorView* t : (*ckpt)->Tensors()) {
    (t->shape.size() >= 2 ? matrices : vectors) += static_cast<uint64_t>(t->numel());
  }
  EXPECT_EQ((*ckpt)->ResidentBytes(DType::kBF16), matrices * 2 + vectors * 4);
  EXPECT_EQ((*ckpt)->ResidentBytes(DType::kF32), (matrices + vectors) * 4);
}

// Copies a tiny checkpoint and lets a test rewrite its tensors through a Python-free path:
// read every tensor of the native f32 fixture, apply `edit`, write a fresh model.safetensors.
class EditedCheckpoint {
 public:
  explicit EditedCheckpoint(const std::string& source) {
    for (const auto& entry : fs::directory_iterator(source)) {
      fs::copy(entry.path(), dir_.path() / entry.path().filename());
    }
  }
  std::string dir() const { return dir_.path().string(); }

  // Rewrites model.safetensors from `tensors` (name, shape) filled with zeros.
  void Write(const std::vector<testing::FakeTensor>& tensors) {
    testing::WriteBytes(dir_.File("model.safetensors"), testing::MakeSafetensors(tensors));
  }
  void WriteConfig(const std::string& text) { testing::WriteBytes(dir_.File("config.json"), text); }

 private:
  TempDir dir_;
};

std::vector<testing::FakeTensor> ExpectedFakes(const ZayaConfig& c) {
  std::vector<testing::FakeTensor> out;
  for (const auto& t : ExpectedTensors(c)) out.push_back({t.name, "F32", t.shape, 0.0f});
  return out;
}

class CheckpointMismatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ckpt = Checkpoint::Open(TinyDir("native-f32"));
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    config_ = (*ckpt)->config();
  }
  ZayaConfig config_;
};

TEST_F(CheckpointMismatchTest, ZeroFilledExpectedSetOpens) {
  EditedCheckpoint e(TinyDir("native-f32"));
  e.Write(ExpectedFakes(config_));
  auto ckpt = Checkpoint::Open(e.dir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
}

TEST_F(CheckpointMismatchTest, MissingTensorIsNamed) {
  EditedCheckpoint e(TinyDir("native-f32"));
  auto fakes = ExpectedFakes(config_);
  std::erase_if(fakes,
                [](const auto& t) { return t.name == "model.layers.1.self_attn.qk_norm.temp"; });
  e.Write(fakes);
  auto ckpt = Checkpoint::Open(e.dir());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(ckpt.status().message().find("model.layers.1.self_attn.qk_norm.temp [2]"),
            std::string::npos)
      << ckpt.status().message();
  EXPECT_NE(ckpt.status().message().find("1 tensor(s) missing"), std::string::npos);
}

TEST_F(CheckpointMismatchTest, ExtraTensorIsNamed) {
  EditedCheckpoint e(TinyDir("native-f32"));
  auto fakes = ExpectedFakes(config_);
  fakes.push_back({"model.layers.0.self_attn.q_norm.weight", "F32", {16}, 0.0f});
  e.Write(fakes);
  auto ckpt = Checkpoint::Open(e.dir());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(
      ckpt.status().message().find("unexpected tensor \"model.layers.0.self_attn.q_norm.weight\""),
      std::string::npos)
      << ckpt.status().message();
}

TEST_F(CheckpointMismatchTest, MisShapedTensorGivesExpectedAndFound) {
  EditedCheckpoint e(TinyDir("native-f32"));
  auto fakes = ExpectedFakes(config_);
  for (auto& t : fakes) {
    if (t.name == "model.layers.0.mlp.experts.down_proj") t.shape = {4, 32, 64};
  }
  e.Write(fakes);
  auto ckpt = Checkpoint::Open(e.dir());
  ASSERT_FALSE(ckpt.ok());
  const std::string& m = ckpt.status().message();
  EXPECT_NE(m.find("\"model.layers.0.mlp.experts.down_proj\" has shape [4, 32, 64] but "
                   "config.json implies [4, 64, 32]"),
            std::string::npos)
      << m;
}

TEST_F(CheckpointMismatchTest, ConfigWithMoreLayersThanTensors) {
  EditedCheckpoint e(TinyDir("native-f32"));
  std::string config = testing::ReadBytes(TinyDir("native-f32") + "/config.json");
  auto json = nlohmann::json::parse(config);
  json["num_hidden_layers"] = 3;
  json["layer_types"] = {"hybrid", "hybrid", "hybrid"};
  e.WriteConfig(json.dump());
  auto ckpt = Checkpoint::Open(e.dir());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(ckpt.status().message().find("model.layers.2."), std::string::npos)
      << ckpt.status().message();
}

TEST(CheckpointLegacyErrors, MissingExpertIsNamed) {
  TempDir dir;
  for (const auto& entry : fs::directory_iterator(TinyDir("legacy-bf16"))) {
    fs::copy(entry.path(), dir.path() / entry.path().filename());
  }
  // Rebuild the legacy file without expert 2's fc1 of the first MoE half-layer.
  auto ckpt = Checkpoint::Open(TinyDir("legacy-bf16"));
  ASSERT_TRUE(ckpt.ok());
  auto set = TensorSet::OpenDirectory(TinyDir("legacy-bf16"));
  ASSERT_TRUE(set.ok());
  std::vector<testing::FakeTensor> fakes;
  for (const TensorView* t : set->Tensors()) {
    if (t->name == "model.layers.1.zaya_block.experts.local_experts.2.linear_fc1.weight") continue;
    fakes.push_back({t->name, "F32", t->shape, 0.0f});
  }
  testing::WriteBytes(dir.File("model.safetensors"), testing::MakeSafetensors(fakes));
  auto broken = Checkpoint::Open(dir.path().string());
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(
      broken.status().message().find("expert 2 of \"model.layers.0.mlp.experts.gate_up_proj\""),
      std::string::npos)
      << broken.status().message();
}

TEST(CheckpointLegacyErrors, UnknownLegacyTensorIsNamed) {
  TempDir dir;
  for (const auto& entry : fs::directory_iterator(TinyDir("legacy-bf16"))) {
    fs::copy(entry.path(), dir.path() / entry.path().filename());
  }
  auto set = TensorSet::OpenDirectory(TinyDir("legacy-bf16"));
  ASSERT_TRUE(set.ok());
  std::vector<testing::FakeTensor> fakes;
  for (const TensorView* t : set->Tensors()) fakes.push_back({t->name, "F32", t->shape, 0.0f});
  fakes.push_back({"model.layers.3.zaya_block.router.extra", "F32", {2}, 0.0f});
  testing::WriteBytes(dir.File("model.safetensors"), testing::MakeSafetensors(fakes));
  auto broken = Checkpoint::Open(dir.path().string());
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("\"model.layers.3.zaya_block.router.extra\""),
            std::string::npos)
      << broken.status().message();
}

// A signed expert index once parsed: "-1" copied before the stacked buffer and "-0" silently
// replaced expert 0.
TEST(CheckpointLegacyErrors, SignedExpertIndexIsNamed) {
  auto set = TensorSet::OpenDirectory(TinyDir("legacy-bf16"));
  ASSERT_TRUE(set.ok());
  const TensorView* expert0 =
      set->Find("model.layers.1.zaya_block.experts.local_experts.0.linear_fc1.weight");
  ASSERT_NE(expert0, nullptr);
  for (const char* index : {"-1", "-0", "+1", "1x"}) {
    SCOPED_TRACE(index);
    TempDir dir;
    for (const auto& entry : fs::directory_iterator(TinyDir("legacy-bf16"))) {
      fs::copy(entry.path(), dir.path() / entry.path().filename());
    }
    std::vector<testing::FakeTensor> fakes;
    for (const TensorView* t : set->Tensors()) fakes.push_back({t->name, "F32", t->shape, 0.0f});
    const std::string bad = "model.layers.1.zaya_block.experts.local_experts." +
                            std::string(index) + ".linear_fc1.weight";
    fakes.push_back({bad, "F32", expert0->shape, 1.0f});
    testing::WriteBytes(dir.File("model.safetensors"), testing::MakeSafetensors(fakes));
    auto broken = Checkpoint::Open(dir.path().string());
    ASSERT_FALSE(broken.ok());
    EXPECT_EQ(broken.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(broken.status().message().find("unexpected tensor \"" + bad + "\""),
              std::string::npos)
        << broken.status().message();
  }
}

// The legacy fixture split over three shards with an index loads exactly like the single file.
TEST(CheckpointTest, ShardedLegacyCheckpointMatchesNative) {
  TempDir dir;
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
    fs::copy(TinyDir("legacy-bf16") + "/" + f, dir.path() / f);
  }
  auto set = TensorSet::OpenDirectory(TinyDir("legacy-bf16"));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  std::vector<std::vector<const TensorView*>> shards(3);
  nlohmann::json weight_map = nlohmann::json::object();
  auto all = set->Tensors();
  for (size_t i = 0; i < all.size(); ++i) {
    const size_t shard = i * 3 / all.size();
    shards[shard].push_back(all[i]);
    weight_map[all[i]->name] = "part-" + std::to_string(shard) + ".safetensors";
  }
  for (size_t s = 0; s < shards.size(); ++s) {
    testing::WriteBytes(dir.File("part-" + std::to_string(s) + ".safetensors"),
                        testing::SafetensorsFromViews(shards[s]));
  }
  testing::WriteBytes(dir.File("model.safetensors.index.json"),
                      nlohmann::json{{"weight_map", weight_map}}.dump());
  auto sharded = Checkpoint::Open(dir.path().string());
  ASSERT_TRUE(sharded.ok()) << sharded.status().ToString();
  auto native = Checkpoint::Open(TinyDir("native-bf16"));
  ASSERT_TRUE(native.ok()) << native.status().ToString();
  auto a = (*native)->Tensors();
  auto b = (*sharded)->Tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i]->name, b[i]->name);
    ASSERT_EQ(a[i]->nbytes, b[i]->nbytes);
    EXPECT_EQ(std::memcmp(a[i]->data, b[i]->data, a[i]->nbytes), 0) << a[i]->name;
  }
}

// Opens any checkpoint named by $ZAYA_TEST_CHECKPOINT (e.g. a generated `small` or `zaya1-8b`
// random model, or a real download) and checks it against its config; skipped when unset.
TEST(CheckpointTest, OpensCheckpointFromEnvironment) {
  const char* dir = std::getenv("ZAYA_TEST_CHECKPOINT");
  if (dir == nullptr) GTEST_SKIP() << "ZAYA_TEST_CHECKPOINT not set";
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->size(), ExpectedTensors((*ckpt)->config()).size());
  std::printf("%s: %s layout, %zu tensors, %.3f GB resident in bf16\n", dir,
              CheckpointLayoutName((*ckpt)->config().layout).data(), (*ckpt)->size(),
              static_cast<double>((*ckpt)->ResidentBytes(DType::kBF16)) / 1e9);
}

TEST(CheckpointTest, MissingDirectoryIsNotFound) {
  auto ckpt = Checkpoint::Open("/nonexistent/zaya");
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace zaya
