// Checkpoint: a ZAYA1 model folder (config.json + safetensors) opened, translated to the native
// tensor names and checked against the config, so that the model code sees one layout.
//
// Native tensor names and shapes (d = hidden_size, L = num_layers, i in [0, L), H = num_heads,
// K = num_kv_heads, D = head_dim, C = (H + K) * D conv channels, R = router_hidden_size,
// E = num_experts (routed), I = moe_intermediate_size, V = vocab_size; ZAYA1-8B values in braces):
//   model.embed_tokens.weight                                   [V, d]   {262272, 2048}
//   model.input_hidden_states_scale, model.input_hidden_states_bias  [d]
//   model.norm.weight                                           [d]
//   lm_head.weight                                              [V, d]   only if
//   !tie_word_embeddings model.layers.i.input_layernorm.weight                       [d]
//   model.layers.i.post_attention_layernorm.weight              [d]
//   model.layers.i.self_attn.qkv_proj.q_proj.weight             [H*D, d] {1024, 2048}
//   model.layers.i.self_attn.qkv_proj.k_proj.weight             [K*D, d] {256, 2048}
//   model.layers.i.self_attn.qkv_proj.v_proj_current.weight     [K*D/2, d] {128, 2048}
//   model.layers.i.self_attn.qkv_proj.v_proj_delayed.weight     [K*D/2, d]
//   model.layers.i.self_attn.qkv_proj.conv_qk_depthwise.weight  [C, 1, 2] {1280, 1, 2}; .bias [C]
//   model.layers.i.self_attn.qkv_proj.conv_qk_grouped.weight    [C, D, 2] {1280, 128, 2}; .bias [C]
//   model.layers.i.self_attn.qk_norm.temp                       [K]
//   model.layers.i.self_attn.o_proj.weight                      [d, H*D]
//   model.layers.i.post_attention_residual_scale.{hidden_states_scale, hidden_states_bias,
//                                                 residual_scale, residual_bias}  [d] each
//   model.layers.i.post_mlp_residual_scale.{same four}          [d] each
//   model.layers.i.mlp.gate.down_proj.weight                    [R, d]; .bias [R]
//   model.layers.i.mlp.gate.router_states_scale                 [R]      only for i >= 1
//   model.layers.i.mlp.gate.router_mlp.norm.weight              [R]
//   model.layers.i.mlp.gate.router_mlp.fc1.weight, fc2.weight   [R, R]; .bias [R]
//   model.layers.i.mlp.gate.router_mlp.out_proj.weight          [E+1, R] (row E = skip expert)
//   model.layers.i.mlp.gate.balancing_biases                    [E+1]    (usually F32)
//   model.layers.i.mlp.experts.gate_up_proj                     [E, 2I, d] rows [0,I) gate, [I,2I)
//   up model.layers.i.mlp.experts.down_proj                        [E, d, I]
// ZAYA1-8B: 1283 tensors native, 2483 legacy. Any dtype among BF16/F16/F32 is accepted per tensor.
//
// A legacy checkpoint's names are translated at load (LegacyToNativeName); its per-expert
// `linear_fc1/linear_fc2` tensors are copied into stacked gate_up_proj/down_proj buffers owned by
// the Checkpoint (for ZAYA1-8B that is the ~16 GB of expert weights held in memory a second time
// while the Checkpoint lives; convert such checkpoints to native once to avoid it). Native
// checkpoints are used in place from the mmap, with no copy.
//
// Ownership: a Checkpoint owns its files' mappings and the stacked buffers; every TensorView it
// returns lives as long as the Checkpoint. Thread safety: immutable after Open; const methods may
// be called concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/weights/dtype.h"
#include "engine/weights/model_config.h"
#include "engine/weights/safetensors.h"

namespace zaya {

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};

// Every native tensor `config` implies, in a fixed order (globals, then layer by layer).
std::vector<ExpectedTensor> ExpectedTensors(const ZayaConfig& config);

// Translates one legacy (Megatron half-layer) tensor name to its native name. `num_layers` is the
// native layer count (half-layers / 2). Per-expert tensors are not handled here (see
// ParseLegacyExpertName). kNotFound for a name that belongs to no ZAYA1 tensor.
Result<std::string> LegacyToNativeName(std::string_view legacy_name, int64_t num_layers);

// For `model.layers.<2i+1>.zaya_block.experts.local_experts.<e>.linear_fc{1,2}.weight`: the native
// stacked tensor name (…experts.gate_up_proj for fc1, …experts.down_proj for fc2) and e.
// Returns false for any other name.
bool ParseLegacyExpertName(std::string_view legacy_name, std::string* native_name, int64_t* expert);

class Checkpoint {
 public:
  // Opens `dir`: config.json plus model.safetensors or model.safetensors.index.json + shards.
  // Errors name the file and the tensor: a missing tensor, an unexpected one, or one whose shape
  // differs from what config.json implies (expected vs found).
  static Result<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const ZayaConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }

  // nullptr when absent (for a checkpoint that opened, only names ExpectedTensors does not list).
  const TensorView* Find(std::string_view native_name) const;

  // All tensors under their native names, sorted by name.
  std::vector<const TensorView*> Tensors() const;
  size_t size() const { return by_name_.size(); }

  // Bytes the weights occupy once loaded with matrices (rank >= 2) converted to `target` and
  // vectors (norm weights, biases, scales) kept in F32, as the model code holds them.
  uint64_t ResidentBytes(DType target) const;

  // Layers whose balancing biases make the skip expert unselectable (bias[E] + 1 <= max of the
  // routed biases, since probabilities lie in [0, 1]); ZAYA1-8B ships [0, ..., 0, -1] everywhere.
  std::vector<int64_t> LayersWithUnreachableSkipExpert() const;

  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

 private:
  Checkpoint() = default;
  Status Index(const TensorView* view, const std::string& source_name);
  Status TranslateLegacy();
  Status Validate() const;

  ZayaConfig config_;
  std::string dir_;
  std::unique_ptr<TensorSet> tensors_;
  std::vector<std::unique_ptr<TensorView>> owned_views_;     // renamed or stacked tensors
  std::vector<std::unique_ptr<std::byte[]>> owned_buffers_;  // stacked legacy experts
  std::map<std::string, const TensorView*, std::less<>> by_name_;
  std::map<std::string, std::string, std::less<>> source_name_;  // native -> name in the file
};

}  // namespace zaya
