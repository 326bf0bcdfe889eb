// ZayaConfig: the model hyper-parameters zayad needs, read from a checkpoint's config.json in
// either of the two layouts ZAYA1 ships in (see /docs/model-files.md):
//  - native (transformers >= 5.13, `model_type: "zaya"`, one hybrid attention+MoE layer per
//    `num_hidden_layers`);
//  - legacy / Megatron (ZAYA1-base, ZAYA1-8B-legacy; recognised by `ffn_hidden_size` or
//    `zaya_layers`): `num_hidden_layers` counts half-layers (even = attention, odd = MoE), so 80
//    half-layers are 40 layers; `ffn_hidden_size` is 2 x the expert intermediate size,
//    `zaya_mlp_expansion` the router width, `norm_epsilon` the RMSNorm epsilon, `num_query_groups`
//    the KV head count.
// Fields with a transformers default (rms_norm_eps, cca_time0/1, rope, router width, token ids,
// ...) may be absent; the model's dimensions may not. Present fields must have the right JSON type.
// Features zayad does not implement (top-k > 1, sliding-window layers, conv kernels other than 2,
// attention biases, a legacy model without the skip expert) are refused with a message saying so.
//
// Thread safety: value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace zaya {

enum class CheckpointLayout { kNative, kLegacy };

std::string_view CheckpointLayoutName(CheckpointLayout layout);  // "native" | "legacy"

struct ZayaConfig {
  CheckpointLayout layout = CheckpointLayout::kNative;

  int64_t hidden_size = 0;            // d: 2048 for ZAYA1-8B
  int64_t num_layers = 0;             // hybrid (attention + MoE) layers: 40
  int64_t num_heads = 0;              // query heads: 8
  int64_t num_kv_heads = 0;           // key/value heads: 2
  int64_t head_dim = 0;               // 128
  int64_t vocab_size = 0;             // 262272
  int64_t num_experts = 0;            // routed experts, excluding the skip expert: 16
  int64_t moe_intermediate_size = 0;  // per-expert SwiGLU width: 2048
  int64_t router_hidden_size = 0;     // 256
  double rms_norm_eps = 1e-5;
  double rope_theta = 5e6;
  double partial_rotary_factor = 0.5;
  int64_t rope_dims = 0;  // head_dim * partial_rotary_factor: rotated leading dims of q and k (64)
  int64_t cca_time0 = 2;  // depthwise conv kernel size
  int64_t cca_time1 = 2;  // grouped conv kernel size
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = true;  // false: the checkpoint has lm_head.weight [vocab, hidden]
  int64_t bos_token_id = -1;        // -1 when the config has none
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;

  // Derived sizes.
  int64_t q_dim() const { return num_heads * head_dim; }                  // 1024
  int64_t kv_dim() const { return num_kv_heads * head_dim; }              // 256
  int64_t conv_channels() const { return q_dim() + kv_dim(); }            // 1280
  int64_t heads_per_kv_head() const { return num_heads / num_kv_heads; }  // 4
  int64_t num_router_classes() const { return num_experts + 1; }          // routed + skip: 17
};

// Parses config.json text. `source` names the file in error messages.
Result<ZayaConfig> ParseZayaConfig(std::string_view json_text, std::string_view source);

// Reads and parses `path` (at most 16 MiB).
Result<ZayaConfig> LoadZayaConfig(const std::string& path);

}  // namespace zaya
