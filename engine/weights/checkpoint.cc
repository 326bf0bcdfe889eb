#include "engine/weights/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/log.h"

namespace zaya {
namespace {

// A tensor-name index as PyTorch writes it: plain decimal digits, no sign, no leading zero.
// std::from_chars alone would take "-1" and "-0", which would index before a buffer or alias
// index 0.
bool ParseIndex(std::string_view digits, int64_t* index) {
  if (digits.empty() || (digits.size() > 1 && digits[0] == '0')) return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *index);
  return ec == std::errc() && ptr == digits.data() + digits.size();
}

// "model.layers.<n>.<rest>" -> n, rest.
bool SplitLayerName(std::string_view name, int64_t* layer, std::string_view* rest) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (name.substr(0, kPrefix.size()) != kPrefix) return false;
  name.remove_prefix(kPrefix.size());
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos || !ParseIndex(name.substr(0, dot), layer)) return false;
  *rest = name.substr(dot + 1);
  return true;
}

std::string Layer(int64_t i) { return "model.layers." + std::to_string(i) + "."; }

const char* const kResidualFields[] = {"hidden_states_scale", "hidden_states_bias",
                                       "residual_scale", "residual_bias"};

bool IsResidualField(std::string_view field) {
  for (const char* f : kResidualFields) {
    if (field == f) return true;
  }
  return false;
}

// Legacy attention half-layer suffix -> native suffix (both under the layer prefix).
const std::pair<std::string_view, std::string_view> kLegacyAttention[] = {
    {"input_norm.weight", "input_layernorm.weight"},
    {"self_attn.qkv.linear_q.weight", "self_attn.qkv_proj.q_proj.weight"},
    {"self_attn.qkv.linear_k.weight", "self_attn.qkv_proj.k_proj.weight"},
    {"self_attn.qkv.val_proj1.weight", "self_attn.qkv_proj.v_proj_current.weight"},
    {"self_attn.qkv.val_proj2.weight", "self_attn.qkv_proj.v_proj_delayed.weight"},
    {"self_attn.qkv.conv_qk.0.weight", "self_attn.qkv_proj.conv_qk_depthwise.weight"},
    {"self_attn.qkv.conv_qk.0.bias", "self_attn.qkv_proj.conv_qk_depthwise.bias"},
    {"self_attn.qkv.conv_qk.1.weight", "self_attn.qkv_proj.conv_qk_grouped.weight"},
    {"self_attn.qkv.conv_qk.1.bias", "self_attn.qkv_proj.conv_qk_grouped.bias"},
    {"self_attn.qkv.temp", "self_attn.qk_norm.temp"},
    {"self_attn.o_proj.weight", "self_attn.o_proj.weight"},
};

// Legacy MoE half-layer suffix -> native suffix.
const std::pair<std::string_view, std::string_view> kLegacyMoe[] = {
    {"input_norm.weight", "post_attention_layernorm.weight"},
    {"zaya_block.router.down_proj.weight", "mlp.gate.down_proj.weight"},
    {"zaya_block.router.down_proj.bias", "mlp.gate.down_proj.bias"},
    {"zaya_block.router.router_states_scale", "mlp.gate.router_states_scale"},
    {"zaya_block.router.rmsnorm_eda.weight", "mlp.gate.router_mlp.norm.weight"},
    {"zaya_block.router.router_mlp.0.weight", "mlp.gate.router_mlp.fc1.weight"},
    {"zaya_block.router.router_mlp.0.bias", "mlp.gate.router_mlp.fc1.bias"},
    {"zaya_block.router.router_mlp.2.weight", "mlp.gate.router_mlp.fc2.weight"},
    {"zaya_block.router.router_mlp.2.bias", "mlp.gate.router_mlp.fc2.bias"},
    {"zaya_block.router.router_mlp.4.weight", "mlp.gate.router_mlp.out_proj.weight"},
    {"zaya_block.router.balancing_biases", "mlp.gate.balancing_biases"},
};

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

std::vector<ExpectedTensor> ExpectedTensors(const ZayaConfig& c) {
  const int64_t d = c.hidden_size, r = c.router_hidden_size, e = c.num_experts;
  const int64_t ch = c.conv_channels();
  std::vector<ExpectedTensor> out = {
      {"model.embed_tokens.weight", {c.vocab_size, d}},
      {"model.input_hidden_states_scale", {d}},
      {"model.input_hidden_states_bias", {d}},
      {"model.norm.weight", {d}},
  };
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, d}});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = Layer(i);
    const std::string qkv = p + "self_attn.qkv_proj.";
    const std::string gate = p + "mlp.gate.";
    out.push_back({p + "input_layernorm.weight", {d}});
    out.push_back({p + "post_attention_layernorm.weight", {d}});
    out.push_back({qkv + "q_proj.weight", {c.q_dim(), d}});
    out.push_back({qkv + "k_proj.weight", {c.kv_dim(), d}});
    out.push_back({qkv + "v_proj_current.weight", {c.kv_dim() / 2, d}});
    out.push_back({qkv + "v_proj_delayed.weight", {c.kv_dim() / 2, d}});
    out.push_back({qkv + "conv_qk_depthwise.weight", {ch, 1, c.cca_time0}});
    out.push_back({qkv + "conv_qk_depthwise.bias", {ch}});
    out.push_back({qkv + "conv_qk_grouped.weight", {ch, c.head_dim, c.cca_time1}});
    out.push_back({qkv + "conv_qk_grouped.bias", {ch}});
    out.push_back({p + "self_attn.qk_norm.temp", {c.num_kv_heads}});
    out.push_back({p + "self_attn.o_proj.weight", {d, c.q_dim()}});
    for (const char* block : {"post_attention_residual_scale.", "post_mlp_residual_scale."}) {
      for (const char* field : kResidualFields) out.push_back({p + block + field, {d}});
    }
    out.push_back({gate + "down_proj.weight", {r, d}});
    out.push_back({gate + "down_proj.bias", {r}});
    if (i > 0) out.push_back({gate + "router_states_scale", {r}});
    out.push_back({gate + "router_mlp.norm.weight", {r}});
    out.push_back({gate + "router_mlp.fc1.weight", {r, r}});
    out.push_back({gate + "router_mlp.fc1.bias", {r}});
    out.push_back({gate + "router_mlp.fc2.weight", {r, r}});
    out.push_back({gate + "router_mlp.fc2.bias", {r}});
    out.push_back({gate + "router_mlp.out_proj.weight", {e + 1, r}});
    out.push_back({gate + "balancing_biases", {e + 1}});
    out.push_back({p + "mlp.experts.gate_up_proj", {e, 2 * c.moe_intermediate_size, d}});
    out.push_back({p + "mlp.experts.down_proj", {e, d, c.moe_intermediate_size}});
  }
  return out;
}

Result<std::string> LegacyToNativeName(std::string_view name, int64_t num_layers) {
  auto unknown = [&] {
    return NotFound("tensor " + Quote(name) + " is not part of a legacy ZAYA1 checkpoint");
  };
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return std::string(name);
  if (name == "model.final_norm.weight") return std::string("model.norm.weight");
  constexpr std::string_view kFinalScale = "model.res_scale.";
  if (name.substr(0, kFinalScale.size()) == kFinalScale) {
    const std::string_view field = name.substr(kFinalScale.size());
    if (!IsResidualField(field) || num_layers < 1) return unknown();
    return Layer(num_layers - 1) + "post_mlp_residual_scale." + std::string(field);
  }
  int64_t half = 0;
  std::string_view rest;
  if (!SplitLayerName(name, &half, &rest) || half >= 2 * num_layers) return unknown();
  const int64_t layer = half / 2;
  constexpr std::string_view kResScale = "res_scale.";
  if (rest.substr(0, kResScale.size()) == kResScale) {
    const std::string_view field = rest.substr(kResScale.size());
    if (!IsResidualField(field)) return unknown();
    if (half % 2 == 1) return Layer(layer) + "post_attention_residual_scale." + std::string(field);
    if (half > 0) return Layer(layer - 1) + "post_mlp_residual_scale." + std::string(field);
    // The merge before the first layer only scales the embeddings: no residual yet.
    if (field == "hidden_states_scale" || field == "hidden_states_bias") {
      return "model.input_" + std::string(field);
    }
    return unknown();
  }
  for (const auto& [legacy, native] : half % 2 == 0 ? kLegacyAttention : kLegacyMoe) {
    if (rest == legacy) return Layer(layer) + std::string(native);
  }
  return unknown();
}

bool ParseLegacyExpertName(std::string_view name, std::string* native_name, int64_t* expert) {
  int64_t half = 0;
  std::string_view rest;
  if (!SplitLayerName(name, &half, &rest) || half % 2 != 1) return false;
  constexpr std::string_view kPrefix = "zaya_block.experts.local_experts.";
  if (rest.substr(0, kPrefix.size()) != kPrefix) return false;
  rest.remove_prefix(kPrefix.size());
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || !ParseIndex(rest.substr(0, dot), expert)) return false;
  const std::string_view kind = rest.substr(dot + 1);
  if (kind == "linear_fc1.weight") {
    *native_name = Layer(half / 2) + "mlp.experts.gate_up_proj";
  } else if (kind == "linear_fc2.weight") {
    *native_name = Layer(half / 2) + "mlp.experts.down_proj";
  } else {
    return false;
  }
  return true;
}

Status Checkpoint::Index(const TensorView* view, const std::string& source_name) {
  auto [it, inserted] = by_name_.emplace(view->name, view);
  if (!inserted) {
    return DataLoss(dir_ + ": tensors " + Quote(source_name_[view->name]) + " and " +
                    Quote(source_name) + " both map to " + Quote(view->name));
  }
  source_name_[view->name] = source_name;
  return Status::Ok();
}

Status Checkpoint::TranslateLegacy() {
  // Stacked name -> expert index -> per-expert tensor.
  std::map<std::string, std::map<int64_t, const TensorView*>> experts;
  for (const TensorView* view : tensors_->Tensors()) {
    std::string stacked;
    int64_t expert = 0;
    if (ParseLegacyExpertName(view->name, &stacked, &expert)) {
      experts[stacked][expert] = view;
      continue;
    }
    auto native = LegacyToNativeName(view->name, config_.num_layers);
    if (!native.ok()) {
      return DataLoss(dir_ + ": unexpected tensor " + Quote(view->name) +
                      " (not a tensor of a legacy ZAYA1 checkpoint with " +
                      std::to_string(config_.num_layers) + " layers)");
    }
    auto renamed = std::make_unique<TensorView>(*view);
    renamed->name = std::move(native).value();
    ZAYA_RETURN_IF_ERROR(Index(renamed.get(), view->name));
    owned_views_.push_back(std::move(renamed));
  }

  const int64_t e_count = config_.num_experts;
  for (const auto& [stacked, parts] : experts) {
    const bool gate_up = stacked.ends_with("gate_up_proj");
    const std::vector<int64_t> part_shape =
        gate_up ? std::vector<int64_t>{2 * config_.moe_intermediate_size, config_.hidden_size}
                : std::vector<int64_t>{config_.hidden_size, config_.moe_intermediate_size};
    const TensorView* first = parts.begin()->second;
    for (int64_t e = 0; e < e_count; ++e) {
      if (parts.count(e) == 0) {
        return DataLoss(dir_ + ": expert " + std::to_string(e) + " of " + Quote(stacked) +
                        " is missing (expected " + std::to_string(e_count) + " tensors like " +
                        Quote(first->name) + ")");
      }
    }
    for (const auto& [e, part] : parts) {
      // ParseIndex never yields e < 0; the check keeps the memcpy below in bounds regardless.
      if (e < 0 || e >= e_count) {
        return DataLoss(dir_ + ": unexpected tensor " + Quote(part->name) + ": config.json has " +
                        std::to_string(e_count) + " experts");
      }
      if (part->shape != part_shape) {
        return DataLoss(dir_ + ": tensor " + Quote(part->name) + " has shape " +
                        part->ShapeString() + " but config.json implies " +
                        FormatShape(part_shape));
      }
      if (part->dtype != first->dtype) {
        return DataLoss(dir_ + ": tensor " + Quote(part->name) + " is " +
                        std::string(DTypeName(part->dtype)) + " but " + Quote(first->name) +
                        " is " + std::string(DTypeName(first->dtype)) +
                        "; experts of one layer must share a dtype");
      }
    }
    const size_t part_bytes = first->nbytes;
    auto buffer = std::make_unique<std::byte[]>(part_bytes * static_cast<size_t>(e_count));
    for (const auto& [e, part] : parts) {
      std::memcpy(buffer.get() + part_bytes * static_cast<size_t>(e), part->data, part_bytes);
    }
    auto view = std::make_unique<TensorView>();
    view->name = stacked;
    view->dtype = first->dtype;
    view->shape = {e_count, part_shape[0], part_shape[1]};
    view->data = buffer.get();
    view->nbytes = part_bytes * static_cast<size_t>(e_count);
    ZAYA_RETURN_IF_ERROR(
        Index(view.get(), first->name + " .. (" + std::to_string(e_count) + " experts)"));
    owned_views_.push_back(std::move(view));
    owned_buffers_.push_back(std::move(buffer));
  }
  return Status::Ok();
}

Status Checkpoint::Validate() const {
  const std::vector<ExpectedTensor> expected = ExpectedTensors(config_);
  std::set<std::string_view> expected_names;
  std::vector<std::string> missing;
  for (const ExpectedTensor& t : expected) {
    expected_names.insert(t.name);
    const TensorView* view = Find(t.name);
    if (view == nullptr) {
      missing.push_back(t.name + " " + FormatShape(t.shape));
      continue;
    }
    if (view->shape != t.shape) {
      const std::string& source = source_name_.find(t.name)->second;
      return DataLoss(dir_ + ": tensor " + Quote(t.name) +
                      (source != t.name ? " (" + Quote(source) + " in the file)" : "") +
                      " has shape " + view->ShapeString() + " but config.json implies " +
                      FormatShape(t.shape));
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 5) list += ", ...";
    return DataLoss(dir_ + ": " + std::to_string(missing.size()) +
                    " tensor(s) missing for the model config.json describes (" +
                    CheckpointLayoutName(config_.layout).data() + " layout): " + list);
  }
  for (const auto& [name, view] : by_name_) {
    if (expected_names.count(name) == 0) {
      const std::string& source = source_name_.find(name)->second;
      return DataLoss(dir_ + ": unexpected tensor " + Quote(source) +
                      (source != name ? " (native name " + Quote(name) + ")" : "") +
                      ": config.json implies no such tensor");
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  ZAYA_ASSIGN_OR_RETURN(ckpt->config_,
                        LoadZayaConfig((std::filesystem::path(dir) / "config.json").string()));
  ZAYA_ASSIGN_OR_RETURN(TensorSet set, TensorSet::OpenDirectory(dir));
  ckpt->tensors_ = std::make_unique<TensorSet>(std::move(set));

  if (ckpt->config_.layout == CheckpointLayout::kLegacy) {
    ZAYA_RETURN_IF_ERROR(ckpt->TranslateLegacy());
  } else {
    for (const TensorView* view : ckpt->tensors_->Tensors()) {
      ZAYA_RETURN_IF_ERROR(ckpt->Index(view, view->name));
    }
  }
  ZAYA_RETURN_IF_ERROR(ckpt->Validate());
  const std::vector<int64_t> unreachable = ckpt->LayersWithUnreachableSkipExpert();
  if (!unreachable.empty()) {
    ZAYA_LOG(kInfo, dir + ": the skip expert can never be selected in " +
                        std::to_string(unreachable.size()) + " of " +
                        std::to_string(ckpt->config_.num_layers) +
                        " layers (balancing bias too low); every token runs a routed expert there");
  }
  return ckpt;
}

const TensorView* Checkpoint::Find(std::string_view native_name) const {
  auto it = by_name_.find(native_name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<const TensorView*> Checkpoint::Tensors() const {
  std::vector<const TensorView*> out;
  out.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) out.push_back(view);
  return out;
}

uint64_t Checkpoint::ResidentBytes(DType target) const {
  uint64_t total = 0;
  for (const auto& [name, view] : by_name_) {
    const size_t element = view->shape.size() >= 2 ? DTypeSize(target) : DTypeSize(DType::kF32);
    total += static_cast<uint64_t>(view->numel()) * element;
  }
  return total;
}

std::vector<int64_t> Checkpoint::LayersWithUnreachableSkipExpert() const {
  std::vector<int64_t> layers;
  const int64_t e = config_.num_experts;
  std::vector<float> bias(static_cast<size_t>(e + 1));
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const TensorView* view = Find(Layer(i) + "mlp.gate.balancing_biases");
    if (view == nullptr) continue;
    ConvertToF32(view->dtype, view->data, bias.size(), bias.data());
    const float best_routed = *std::max_element(bias.begin(), bias.end() - 1);
    if (bias.back() + 1.0f <= best_routed) layers.push_back(i);
  }
  return layers;
}

}  // namespace zaya
