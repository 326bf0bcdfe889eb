#include "engine/weights/model_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "base/json_depth.h"

namespace zaya {
namespace {

using nlohmann::json;

// Caps that keep every derived size far from overflow; real models are orders of magnitude below.
constexpr int64_t kMaxDim = int64_t{1} << 24;
constexpr int64_t kMaxCount = 4096;

// Typed access to one config object; every error names the file and the key.
class Fields {
 public:
  Fields(const json& object, std::string_view source) : object_(object), source_(source) {}

  Status Error(std::string_view key, std::string_view what) const {
    return InvalidArgument(std::string(source_) + ": \"" + std::string(key) + "\" " +
                           std::string(what));
  }
  Status Error(std::string_view what) const {
    return InvalidArgument(std::string(source_) + ": " + std::string(what));
  }

  bool Has(std::string_view key) const {
    auto it = object_.find(key);
    return it != object_.end() && !it->is_null();
  }

  Result<int64_t> Int(std::string_view key, std::optional<int64_t> fallback) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      if (fallback) return *fallback;
      return Error(key, "is missing (the model's dimensions must be stated in config.json)");
    }
    if (!it->is_number_integer()) return Error(key, "must be an integer, found " + Dump(*it));
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Error(key, "is out of range");
    }
    return it->get<int64_t>();
  }

  // A dimension or count: an integer in [1, limit].
  Result<int64_t> Positive(std::string_view key, std::optional<int64_t> fallback,
                           int64_t limit = kMaxDim) const {
    ZAYA_ASSIGN_OR_RETURN(int64_t v, Int(key, fallback));
    if (v <= 0) return Error(key, "must be positive, found " + std::to_string(v));
    if (v > limit) {
      return Error(key, "is " + std::to_string(v) + ", above the supported maximum " +
                            std::to_string(limit));
    }
    return v;
  }

  Result<double> Number(std::string_view key, double fallback) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return fallback;
    if (!it->is_number()) return Error(key, "must be a number, found " + Dump(*it));
    return it->get<double>();
  }

  Result<bool> Bool(std::string_view key, bool fallback) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) return Error(key, "must be true or false, found " + Dump(*it));
    return it->get<bool>();
  }

  Result<std::optional<std::string>> String(std::string_view key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string()) return Error(key, "must be a string, found " + Dump(*it));
    return std::optional<std::string>(it->get<std::string>());
  }

  const json* Get(std::string_view key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  static std::string Dump(const json& v) {
    std::string s = v.dump();
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
  }

 private:
  const json& object_;
  std::string_view source_;
};

// Token ids: an integer, or for eos also a list of integers; each in [0, vocab).
Status ParseTokenIds(const Fields& f, std::string_view key, bool allow_list, int64_t vocab,
                     std::vector<int64_t>* out) {
  const json* v = f.Get(key);
  if (v == nullptr) return Status::Ok();
  std::vector<json> items;
  if (v->is_array() && allow_list) {
    items.assign(v->begin(), v->end());
  } else {
    items.push_back(*v);
  }
  for (const json& item : items) {
    if (!item.is_number_integer()) {
      return f.Error(key, std::string("must be a token id") +
                              (allow_list ? " or a list of ids" : "") + ", found " +
                              Fields::Dump(*v));
    }
    const int64_t id = item.get<int64_t>();
    if (id < 0 || id >= vocab) {
      return f.Error(key, "id " + std::to_string(id) + " is outside the vocabulary [0, " +
                              std::to_string(vocab) + ")");
    }
    out->push_back(id);
  }
  return Status::Ok();
}

// RoPE settings: `rope_parameters` nested per layer type ({"hybrid": {...}}) or flat, else the
// older top-level `rope_theta` / `partial_rotary_factor` (legacy: also `rotary_percent`).
Status ParseRope(const Fields& f, ZayaConfig* c) {
  ZAYA_ASSIGN_OR_RETURN(c->rope_theta, f.Number("rope_theta", 5e6));
  ZAYA_ASSIGN_OR_RETURN(double percent, f.Number("rotary_percent", 0.5));
  ZAYA_ASSIGN_OR_RETURN(c->partial_rotary_factor, f.Number("partial_rotary_factor", percent));
  if (const json* rp = f.Get("rope_parameters")) {
    if (!rp->is_object()) return f.Error("rope_parameters", "must be an object");
    const json* params = rp;
    if (auto it = rp->find("hybrid"); it != rp->end()) {
      if (!it->is_object()) return f.Error("rope_parameters.hybrid", "must be an object");
      params = &*it;
    }
    Fields rf(*params, "");
    auto type = rf.String("rope_type");
    if (!type.ok() || (type->has_value() && **type != "default")) {
      return f.Error("rope_parameters",
                     "rope_type must be \"default\" (zayad implements plain RoPE only), found " +
                         Fields::Dump(params->value("rope_type", json())));
    }
    auto theta = rf.Number("rope_theta", c->rope_theta);
    if (!theta.ok()) return f.Error("rope_parameters", "rope_theta must be a number");
    auto factor = rf.Number("partial_rotary_factor", c->partial_rotary_factor);
    if (!factor.ok()) return f.Error("rope_parameters", "partial_rotary_factor must be a number");
    c->rope_theta = *theta;
    c->partial_rotary_factor = *factor;
  }
  if (!(c->rope_theta > 0) || !std::isfinite(c->rope_theta)) {
    return f.Error("rope_theta", "must be a positive number");
  }
  if (!(c->partial_rotary_factor > 0 && c->partial_rotary_factor <= 1)) {
    return f.Error("partial_rotary_factor", "must be in (0, 1]");
  }
  const double dims = static_cast<double>(c->head_dim) * c->partial_rotary_factor;
  c->rope_dims = static_cast<int64_t>(dims);
  if (c->rope_dims < 2 || c->rope_dims % 2 != 0) {
    return f.Error("partial_rotary_factor", "x head_dim gives " + std::to_string(c->rope_dims) +
                                                " rotated dims; RoPE needs an even number >= 2");
  }
  return Status::Ok();
}

Status RequireValue(const Fields& f, std::string_view key, const json& expected,
                    std::string_view why) {
  const json* v = f.Get(key);
  if (v != nullptr && *v != expected) {
    return f.Error(key, "is " + Fields::Dump(*v) + "; zayad supports only " + expected.dump() +
                            " (" + std::string(why) + ")");
  }
  return Status::Ok();
}

Status ParseNative(const Fields& f, ZayaConfig* c) {
  ZAYA_ASSIGN_OR_RETURN(c->num_layers, f.Positive("num_hidden_layers", std::nullopt, kMaxCount));
  ZAYA_ASSIGN_OR_RETURN(c->num_kv_heads,
                        f.Positive("num_key_value_heads", std::nullopt, kMaxCount));
  ZAYA_ASSIGN_OR_RETURN(c->moe_intermediate_size,
                        f.Positive("moe_intermediate_size", std::nullopt));
  ZAYA_ASSIGN_OR_RETURN(c->router_hidden_size, f.Positive("router_hidden_size", 256));
  ZAYA_ASSIGN_OR_RETURN(c->rms_norm_eps, f.Number("rms_norm_eps", 1e-5));
  ZAYA_ASSIGN_OR_RETURN(c->head_dim, f.Positive("head_dim", std::nullopt, kMaxCount));
  ZAYA_RETURN_IF_ERROR(RequireValue(f, "num_experts_per_tok", 1, "top-1 routing"));

  if (const json* types = f.Get("layer_types")) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != c->num_layers) {
      return f.Error("layer_types", "must be a list of num_hidden_layers (" +
                                        std::to_string(c->num_layers) + ") layer types");
    }
    for (const json& t : *types) {
      if (t != "hybrid") {
        return f.Error("layer_types", "contains " + Fields::Dump(t) +
                                          "; zayad supports only \"hybrid\" layers (no sliding "
                                          "window attention)");
      }
    }
  }
  return Status::Ok();
}

Status ParseLegacy(const Fields& f, ZayaConfig* c) {
  ZAYA_ASSIGN_OR_RETURN(int64_t half_layers,
                        f.Positive("num_hidden_layers", std::nullopt, 2 * kMaxCount));
  if (half_layers % 2 != 0) {
    return f.Error("num_hidden_layers",
                   "is " + std::to_string(half_layers) +
                       "; a legacy ZAYA config counts attention and MoE half-layers, so it must be "
                       "even");
  }
  c->num_layers = half_layers / 2;
  if (f.Has("num_query_groups")) {
    ZAYA_ASSIGN_OR_RETURN(c->num_kv_heads, f.Positive("num_query_groups", std::nullopt, kMaxCount));
  } else {
    ZAYA_ASSIGN_OR_RETURN(c->num_kv_heads,
                          f.Positive("num_key_value_heads", std::nullopt, kMaxCount));
  }
  if (f.Has("ffn_hidden_size")) {
    ZAYA_ASSIGN_OR_RETURN(int64_t ffn, f.Positive("ffn_hidden_size", std::nullopt));
    if (ffn % 2 != 0) {
      return f.Error("ffn_hidden_size", "must be even (it holds the gate and up halves)");
    }
    c->moe_intermediate_size = ffn / 2;
  } else {
    ZAYA_ASSIGN_OR_RETURN(c->moe_intermediate_size,
                          f.Positive("moe_intermediate_size", std::nullopt));
  }
  if (f.Has("zaya_mlp_expansion")) {
    ZAYA_ASSIGN_OR_RETURN(c->router_hidden_size, f.Positive("zaya_mlp_expansion", std::nullopt));
  } else {
    ZAYA_ASSIGN_OR_RETURN(c->router_hidden_size, f.Positive("router_hidden_size", 256));
  }
  ZAYA_ASSIGN_OR_RETURN(double eps, f.Number("rms_norm_eps", 1e-5));
  ZAYA_ASSIGN_OR_RETURN(c->rms_norm_eps, f.Number("norm_epsilon", eps));
  if (f.Has("head_dim")) {
    ZAYA_ASSIGN_OR_RETURN(c->head_dim, f.Positive("head_dim", std::nullopt, kMaxCount));
    if (f.Has("kv_channels")) {
      ZAYA_ASSIGN_OR_RETURN(int64_t kv_channels, f.Positive("kv_channels", std::nullopt));
      if (kv_channels != c->head_dim) {
        return f.Error("kv_channels (" + std::to_string(kv_channels) + ") and head_dim (" +
                       std::to_string(c->head_dim) + ") disagree");
      }
    }
  } else {
    ZAYA_ASSIGN_OR_RETURN(c->head_dim, f.Positive("kv_channels", std::nullopt, kMaxCount));
  }
  ZAYA_RETURN_IF_ERROR(RequireValue(f, "moe_router_topk", 1, "top-1 routing"));
  ZAYA_RETURN_IF_ERROR(RequireValue(f, "num_experts_per_tok", 1, "top-1 routing"));
  ZAYA_RETURN_IF_ERROR(RequireValue(f, "zaya_use_mod", true, "the skip expert is part of ZAYA1"));
  ZAYA_RETURN_IF_ERROR(
      RequireValue(f, "zaya_use_eda", true, "ZAYA1 routers read the previous layer's state"));
  ZAYA_RETURN_IF_ERROR(
      RequireValue(f, "scale_residual_merge", true, "ZAYA1 scales its residual merges"));
  if (const json* swa = f.Get("swa_layers")) {
    if (!swa->is_array()) return f.Error("swa_layers", "must be a list");
    for (const json& w : *swa) {
      if (w != 0) {
        return f.Error("swa_layers",
                       "enables sliding-window attention, which zayad does not implement");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

std::string_view CheckpointLayoutName(CheckpointLayout layout) {
  return layout == CheckpointLayout::kNative ? "native" : "legacy";
}

Result<ZayaConfig> ParseZayaConfig(std::string_view json_text, std::string_view source) {
  json root;
  // config.json is at most a few levels deep; anything deeper is not one (base/json_depth.h).
  if (JsonNestingDepth(json_text, 32) > 32) {
    return InvalidArgument(std::string(source) + ": JSON nested more than 32 levels deep");
  }
  try {
    root = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    return InvalidArgument(std::string(source) + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) return InvalidArgument(std::string(source) + ": not a JSON object");
  Fields f(root, source);

  ZayaConfig c;
  const bool legacy = f.Has("ffn_hidden_size") || f.Has("zaya_layers");
  ZAYA_ASSIGN_OR_RETURN(std::optional<std::string> model_type, f.String("model_type"));
  if (!legacy) {
    if (!model_type) {
      return f.Error(
          "has no \"model_type\" and no legacy ZAYA keys (ffn_hidden_size, zaya_layers); is this "
          "a ZAYA1 checkpoint?");
    }
    if (*model_type != "zaya") {
      return f.Error("model_type",
                     "is \"" + *model_type + "\"; zayad runs ZAYA1 models (model_type \"zaya\")");
    }
  } else if (model_type && *model_type != "zaya") {
    return f.Error("model_type", "is \"" + *model_type + "\"; expected \"zaya\"");
  }
  c.layout = legacy ? CheckpointLayout::kLegacy : CheckpointLayout::kNative;

  ZAYA_ASSIGN_OR_RETURN(c.vocab_size, f.Positive("vocab_size", std::nullopt));
  ZAYA_ASSIGN_OR_RETURN(c.hidden_size, f.Positive("hidden_size", std::nullopt));
  ZAYA_ASSIGN_OR_RETURN(c.num_heads, f.Positive("num_attention_heads", std::nullopt, kMaxCount));
  ZAYA_ASSIGN_OR_RETURN(c.num_experts, f.Positive("num_experts", std::nullopt, kMaxCount));
  ZAYA_RETURN_IF_ERROR(legacy ? ParseLegacy(f, &c) : ParseNative(f, &c));

  ZAYA_ASSIGN_OR_RETURN(c.cca_time0, f.Int("cca_time0", 2));
  ZAYA_ASSIGN_OR_RETURN(c.cca_time1, f.Int("cca_time1", 2));
  if (c.cca_time0 != 2 || c.cca_time1 != 2) {
    return f.Error("cca_time0/cca_time1 are " + std::to_string(c.cca_time0) + "/" +
                   std::to_string(c.cca_time1) +
                   "; zayad's CCA kernels implement conv kernel sizes 2/2 only (ZAYA1)");
  }
  ZAYA_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        f.Positive("max_position_embeddings", 131072, int64_t{1} << 31));
  ZAYA_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", true));
  ZAYA_RETURN_IF_ERROR(RequireValue(f, "attention_bias", false, "ZAYA1 projections have no bias"));
  ZAYA_RETURN_IF_ERROR(RequireValue(f, "lm_head_bias", false, "ZAYA1's head has no bias"));
  if (auto act = f.String("hidden_act"); !act.ok() || (act->has_value() && **act != "silu")) {
    return f.Error("hidden_act", "must be \"silu\" (SwiGLU experts)");
  }

  if (c.num_heads % c.num_kv_heads != 0) {
    return f.Error("num_attention_heads (" + std::to_string(c.num_heads) +
                   ") must be a multiple of the KV head count (" + std::to_string(c.num_kv_heads) +
                   ")");
  }
  if (c.head_dim % 2 != 0) {
    return f.Error("head_dim", "must be even (values are split into current and delayed halves)");
  }
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps)) {
    return f.Error("rms_norm_eps", "must be a positive number");
  }
  ZAYA_RETURN_IF_ERROR(ParseRope(f, &c));

  std::vector<int64_t> ids;
  ZAYA_RETURN_IF_ERROR(ParseTokenIds(f, "bos_token_id", false, c.vocab_size, &ids));
  if (!ids.empty()) c.bos_token_id = ids[0];
  ids.clear();
  ZAYA_RETURN_IF_ERROR(ParseTokenIds(f, "pad_token_id", false, c.vocab_size, &ids));
  if (!ids.empty()) c.pad_token_id = ids[0];
  ZAYA_RETURN_IF_ERROR(ParseTokenIds(f, "eos_token_id", true, c.vocab_size, &c.eos_token_ids));
  return c;
}

Result<ZayaConfig> LoadZayaConfig(const std::string& path) {
  constexpr uintmax_t kMaxConfigBytes = 16u << 20;
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return NotFound(path + ": cannot read config.json: " + ec.message());
  if (size > kMaxConfigBytes) return InvalidArgument(path + ": larger than 16 MiB");
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open config.json");
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return ParseZayaConfig(text, path);
}

}  // namespace zaya
