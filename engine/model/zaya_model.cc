#include "engine/model/zaya_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <utility>

#include "base/log.h"
#include "engine/weights/dtype.h"

namespace zaya {
namespace {

constexpr uint64_t kAlign = 64;
uint64_t AlignUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

zaya_tensor MakeTensor(zaya_buffer* buffer, uint64_t offset, zaya_dtype dtype,
                       std::initializer_list<int64_t> shape) {
  zaya_tensor t{};
  t.buffer = buffer;
  t.offset = offset;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  int i = 0;
  for (int64_t d : shape) t.shape[i++] = d;
  return t;
}

size_t ElemSize(zaya_dtype d) {
  switch (d) {
    case ZAYA_DTYPE_F32:
    case ZAYA_DTYPE_I32:
      return 4;
    case ZAYA_DTYPE_BF16:
    case ZAYA_DTYPE_F16:
      return 2;
    case ZAYA_DTYPE_I8:
      return 1;
  }
  return 4;
}

zaya_op Op(zaya_op_type type) {
  zaya_op op{};
  op.type = type;
  return op;
}

// A matrix weight on the device: values plus (int8 only) its scales, one per ZAYA_I8_BLOCK values.
struct DeviceMatrix {
  zaya_tensor w{};
  zaya_tensor scales{};
};

struct LayerWeights {
  zaya_tensor input_norm, post_attn_norm;
  DeviceMatrix q, k, v_cur, v_del, o;
  zaya_tensor dw_w, dw_b, gw_w, gw_b, temp;
  zaya_tensor attn_hb, attn_hs, attn_rb, attn_rs;  // branch bias/scale, residual bias/scale
  zaya_tensor mlp_hb, mlp_hs, mlp_rb, mlp_rs;
  DeviceMatrix r_down, r_fc1, r_fc2, r_out;
  zaya_tensor r_down_b, r_states_scale, r_norm, r_fc1_b, r_fc2_b, balancing;
  DeviceMatrix gate_up, down;
  bool has_states_scale = false;
};

}  // namespace

struct ZayaModel::Impl {
  Backend* backend = nullptr;
  ZayaConfig cfg;
  ModelOptions opt;
  zaya_dtype wdtype = ZAYA_DTYPE_BF16;
  zaya_dtype kvdtype = ZAYA_DTYPE_F32;

  BufferHandle weights;
  BufferHandle state;    // KV caches then CCA state
  BufferHandle scratch;  // activations
  BufferHandle host;     // per-step index tensors

  zaya_tensor embed_in_bias{}, embed_in_scale{}, final_norm{};
  DeviceMatrix embed, lm_head;
  std::vector<LayerWeights> layers;

  // State views per layer.
  std::vector<zaya_tensor> k_cache, v_cache, conv_state, v_state;
  std::vector<zaya_tensor> k_scale, v_scale;  // int8 caches: [blocks, bt, nkv] f32 each
  uint64_t kv_layer_bytes = 0;                // one layer's K (or V) cache
  uint64_t scale_layer_bytes = 0;  // one layer's K (or V) row scales (int8 caches), else 0
  uint64_t conv_slot_bytes = 0, vstate_slot_bytes = 0;

  // Scratch layout (offsets in `scratch`), sized for max_step_tokens / max_step_sequences.
  uint64_t s_h = 0, s_a = 0, s_qk0 = 0, s_k0 = 0, s_vcur = 0, s_vdel = 0, s_q = 0, s_k = 0, s_v = 0,
           s_attn = 0, s_o = 0, s_r[2] = {0, 0}, s_rn = 0, s_r1 = 0, s_r2 = 0, s_rl = 0,
           s_expert = 0, s_weight = 0, s_moe = 0, s_last = 0, s_logits = 0, s_routing = 0;
  int64_t routed_tokens = -1;  // tokens of the last Forward (ReadLastRouting), -1 before any
  uint64_t h_ids = 0, h_seq = 0, h_slot = 0, h_pos = 0, h_table = 0, h_gather = 0, host_bytes = 0;
  int64_t max_blocks = 0;

  std::vector<std::byte> host_staging;
  std::vector<zaya_op> ops;

  Status Upload(const Checkpoint& ck);
  Status AllocateState();
  Status AllocateScratch();
};

ZayaModel::ZayaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ZayaModel::~ZayaModel() = default;

namespace {

Result<zaya_dtype> ParseWeightsDType(const std::string& s) {
  if (s == "bf16") return ZAYA_DTYPE_BF16;
  if (s == "f32") return ZAYA_DTYPE_F32;
  if (s == "int8") return ZAYA_DTYPE_I8;
  return InvalidArgument("model.weights_dtype '" + s + "' is not one of bf16, f32, int8");
}

// fn(begin, end) over [0, n) in up to hardware_concurrency() threads, in chunks of at least
// `grain`. Loading converts every weight (8.8e9 values for the 8B shape); one thread takes about
// a minute for int8, which users see as a daemon that is slow to become ready.
template <class Fn>
void ParallelRange(int64_t n, int64_t grain, Fn&& fn) {
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t parts = std::clamp<int64_t>(n / std::max<int64_t>(grain, 1), 1, hw);
  if (parts == 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(parts));
  for (int64_t p = 0; p < parts; ++p) threads.emplace_back(fn, n * p / parts, n * (p + 1) / parts);
  for (auto& t : threads) t.join();
}

void AtomicMin(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load();
  while (v < cur && !a.compare_exchange_weak(cur, v)) {
  }
}

uint64_t MatrixBytes(int64_t rows, int64_t cols, zaya_dtype d) {
  uint64_t b = AlignUp(static_cast<uint64_t>(rows * cols) * ElemSize(d));
  if (d == ZAYA_DTYPE_I8) b += AlignUp(static_cast<uint64_t>(rows * zaya_i8_scales(cols)) * 4);
  return b;
}

}  // namespace

uint64_t ZayaModel::WeightBytes(const ZayaConfig& c, const std::string& weights_dtype) {
  auto parsed = ParseWeightsDType(weights_dtype);
  const zaya_dtype d = parsed.ok() ? *parsed : ZAYA_DTYPE_BF16;
  const int64_t H = c.hidden_size, R = c.router_hidden_size, E = c.num_experts,
                I = c.moe_intermediate_size;
  auto vec = [](int64_t n) { return AlignUp(static_cast<uint64_t>(n) * 4); };
  uint64_t total = MatrixBytes(c.vocab_size, H, d) + 3 * vec(H);
  if (!c.tie_word_embeddings) total += MatrixBytes(c.vocab_size, H, d);
  uint64_t layer = 2 * vec(H);
  layer += MatrixBytes(c.q_dim(), H, d) + MatrixBytes(c.kv_dim(), H, d) +
           2 * MatrixBytes(c.kv_dim() / 2, H, d) + MatrixBytes(H, c.q_dim(), d);
  const int64_t C = c.conv_channels();
  // The grouped convolution's weights (C x hd x 2, the one large "vector") follow the matrices'
  // dtype, bf16 for int8 models: decode reads them every step.
  const uint64_t gw_esz = d == ZAYA_DTYPE_F32 ? 4 : 2;
  layer += vec(C * 2) + vec(C) + AlignUp(static_cast<uint64_t>(C * c.head_dim * 2) * gw_esz) +
           vec(C) + vec(c.num_kv_heads);
  layer += 8 * vec(H);
  layer += MatrixBytes(R, H, d) + vec(R) + vec(R) + vec(R) + 2 * (MatrixBytes(R, R, d) + vec(R)) +
           MatrixBytes(E + 1, R, d) + vec(E + 1);
  layer += MatrixBytes(E * 2 * I, H, d) + MatrixBytes(E * H, I, d);
  return total + layer * static_cast<uint64_t>(c.num_layers);
}

uint64_t ZayaModel::KvBlockBytes(const ZayaConfig& c, int64_t block_tokens,
                                 const std::string& kv_dtype) {
  const uint64_t esz = kv_dtype == "bf16" ? 2 : kv_dtype == "int8" ? 1 : 4;
  // int8: a f32 scale per position and KV head next to its bytes.
  const uint64_t scales = kv_dtype == "int8" ? 4 * static_cast<uint64_t>(c.num_kv_heads) : 0;
  return static_cast<uint64_t>(c.num_layers) * 2 * block_tokens * (c.kv_dim() * esz + scales);
}

std::string ZayaModel::KvDtypeFor(const std::string& weights_dtype, const std::string& kv_dtype) {
  if (kv_dtype != "auto") return kv_dtype;
  return weights_dtype == "f32" ? "f32" : "bf16";
}

uint64_t ZayaModel::SlotBytes(const ZayaConfig& c) {
  return static_cast<uint64_t>(c.num_layers) * (2 * c.conv_channels() + c.kv_dim() / 2) * 4;
}

Result<std::unique_ptr<ZayaModel>> ZayaModel::Load(const Checkpoint& checkpoint, Backend& backend,
                                                   const ModelOptions& options) {
  const ZayaConfig& c = checkpoint.config();
  auto impl = std::make_unique<Impl>();
  impl->backend = &backend;
  impl->cfg = c;
  impl->opt = options;
  ZAYA_ASSIGN_OR_RETURN(impl->wdtype, ParseWeightsDType(options.weights_dtype));
  if (options.kv_dtype == "f32") {
    impl->kvdtype = ZAYA_DTYPE_F32;
  } else if (options.kv_dtype == "bf16") {
    impl->kvdtype = ZAYA_DTYPE_BF16;
  } else if (options.kv_dtype == "int8") {
    impl->kvdtype = ZAYA_DTYPE_I8;
    ZAYA_ASSIGN_OR_RETURN(const zaya_device_info info, backend.DeviceInfo());
    if ((info.caps & ZAYA_CAP_I8_KV) == 0) {
      return Unimplemented("the " + backend.name() +
                           " backend cannot keep the KV cache in int8 (it does not report "
                           "ZAYA_CAP_I8_KV); set model.kv_dtype = \"auto\" or \"bf16\"");
    }
  } else {
    return InvalidArgument("kv dtype '" + options.kv_dtype + "' is not f32, bf16 or int8");
  }
  if (c.cca_time0 != 2 || c.cca_time1 != 2) {
    return Unimplemented("this engine implements CCA with kernel sizes 2/2 only");
  }
  if (c.num_kv_heads % 2 != 0) {
    return Unimplemented(
        "CCA values split kv heads into current/delayed halves; need an even "
        "num_key_value_heads, got " +
        std::to_string(c.num_kv_heads));
  }
  if (options.max_step_tokens <= 0 || options.max_step_sequences <= 0 || options.num_slots <= 0 ||
      options.num_kv_blocks <= 0 || options.block_tokens <= 0) {
    return InvalidArgument("model options: step sizes, slots and KV blocks must be positive");
  }
  const uint64_t need = WeightBytes(c, options.weights_dtype);
  if (options.weights_budget != 0 && need > options.weights_budget) {
    return OverBudget("the model needs " + std::to_string(need >> 20) + " MiB of weights at " +
                      options.weights_dtype + " but memory.weights allows " +
                      std::to_string(options.weights_budget >> 20) +
                      " MiB; raise memory.weights or use model.weights_dtype = \"int8\"");
  }
  impl->max_blocks =
      options.max_blocks_per_sequence > 0
          ? options.max_blocks_per_sequence
          : (c.max_position_embeddings + options.block_tokens - 1) / options.block_tokens;
  ZAYA_RETURN_IF_ERROR(impl->Upload(checkpoint));
  ZAYA_RETURN_IF_ERROR(impl->AllocateState());
  ZAYA_RETURN_IF_ERROR(impl->AllocateScratch());
  auto model = std::unique_ptr<ZayaModel>(new ZayaModel(std::move(impl)));
  model->config_ = c;
  model->options_ = options;
  model->weight_bytes_ = model->impl_->weights.bytes();
  model->state_bytes_ = model->impl_->state.bytes();
  return model;
}

Status ZayaModel::Impl::Upload(const Checkpoint& ck) {
  const ZayaConfig& c = cfg;
  const uint64_t total = WeightBytes(c, opt.weights_dtype);
  ZAYA_ASSIGN_OR_RETURN(weights, backend->Alloc(ZAYA_BUFFER_WEIGHTS, total));
  uint64_t cursor = 0;
  std::vector<float> f32;
  std::vector<std::byte> packed;

  // A NaN or infinite weight would turn every logit into NaN (and, before int8 quantization, is
  // an undefined float-to-int cast), so the load stops with the tensor's name instead. The scan
  // runs over [0, numel) on all cores, with `also(b, e)` (the conversion, where there is one) on
  // each range right after it, on data just read.
  auto scan_finite = [](const std::string& name, DType dtype, const std::byte* data,
                        int64_t numel, int64_t grain, auto&& also) -> Status {
    std::atomic<int64_t> bad{numel};
    const size_t esz = DTypeSize(dtype);
    ParallelRange(numel, grain, [&](int64_t b, int64_t e) {
      const int64_t at = FirstNonFinite(dtype, data + b * esz, static_cast<size_t>(e - b));
      if (at >= 0) AtomicMin(bad, b + at);
      also(b, e);
    });
    if (bad.load() == numel) return Status::Ok();
    return InvalidArgument("tensor " + name + " holds a NaN or infinite value (element " +
                           std::to_string(bad.load()) +
                           "): the checkpoint is damaged or was saved from a diverged run; "
                           "re-export it from a good copy");
  };
  auto fetch = [&](const std::string& name, int64_t numel) -> Result<const TensorView*> {
    const TensorView* t = ck.Find(name);
    if (t == nullptr) return NotFound("tensor " + name + " is missing from the checkpoint");
    if (t->numel() != numel) {
      return InvalidArgument("tensor " + name + " has " + std::to_string(t->numel()) +
                             " elements, expected " + std::to_string(numel));
    }
    f32.resize(static_cast<size_t>(numel));
    const size_t esz = DTypeSize(t->dtype);
    ZAYA_RETURN_IF_ERROR(
        scan_finite(name, t->dtype, t->data, numel, int64_t{1} << 20, [&](int64_t b, int64_t e) {
          ConvertToF32(t->dtype, t->data + b * esz, static_cast<size_t>(e - b), f32.data() + b);
        }));
    return t;
  };
  // A vector, stored in f32, or in bf16 when `as_bf16` (see WeightBytes for which ones).
  auto vec = [&](const std::string& name, int64_t n, zaya_tensor* out,
                 bool as_bf16 = false) -> Status {
    ZAYA_ASSIGN_OR_RETURN(const TensorView* t, fetch(name, n));
    (void)t;
    const void* src = f32.data();
    uint64_t bytes = static_cast<uint64_t>(n) * 4;
    if (as_bf16) {
      packed.resize(static_cast<size_t>(n) * 2);
      auto* p = reinterpret_cast<uint16_t*>(packed.data());
      for (int64_t i = 0; i < n; ++i) p[i] = F32ToBf16(f32[i]);
      src = packed.data();
      bytes = static_cast<uint64_t>(n) * 2;
    }
    ZAYA_RETURN_IF_ERROR(backend->Write(weights, cursor, src, bytes));
    *out = MakeTensor(weights.get(), cursor, as_bf16 ? ZAYA_DTYPE_BF16 : ZAYA_DTYPE_F32, {n});
    cursor += AlignUp(bytes);
    return Status::Ok();
  };
  // Matrices [rows, cols] (a 3-D expert stack is rows = E * per-expert rows).
  auto mat = [&](const std::string& name, std::initializer_list<int64_t> shape,
                 DeviceMatrix* out) -> Status {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const int64_t cols = *(shape.end() - 1);
    const int64_t rows = numel / cols;
    const uint64_t vbytes = static_cast<uint64_t>(numel) * ElemSize(wdtype);
    // bf16 stored and kept: hand the mapped bytes to the backend as they are. The round trip
    // through f32 is exact but single-threaded, ~30 s for the 8B shape's 8.8e9 values.
    const TensorView* direct = ck.Find(name);
    const bool as_stored = direct != nullptr && direct->numel() == numel &&
                           direct->dtype == DType::kBF16 && wdtype == ZAYA_DTYPE_BF16;
    if (!as_stored) {
      ZAYA_ASSIGN_OR_RETURN(const TensorView* t, fetch(name, numel));
      (void)t;
      packed.resize(vbytes);
    } else {
      ZAYA_RETURN_IF_ERROR(scan_finite(name, DType::kBF16, direct->data, numel, int64_t{1} << 22,
                                       [](int64_t, int64_t) {}));
    }
    std::vector<float> scales;
    if (as_stored) {
      // written below straight from the mapping
    } else if (wdtype == ZAYA_DTYPE_F32) {
      std::memcpy(packed.data(), f32.data(), vbytes);
    } else if (wdtype == ZAYA_DTYPE_BF16) {
      auto* p = reinterpret_cast<uint16_t*>(packed.data());
      ParallelRange(numel, int64_t{1} << 20, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) p[i] = F32ToBf16(f32[i]);
      });
    } else {
      const int64_t blocks = zaya_i8_scales(cols);
      scales.resize(static_cast<size_t>(rows * blocks));
      auto* p = reinterpret_cast<int8_t*>(packed.data());
      ParallelRange(
          rows, std::max<int64_t>(1, (int64_t{1} << 20) / cols), [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
              QuantizeI8Row(f32.data() + r * cols, cols, p + r * cols, scales.data() + r * blocks);
            }
          });
    }
    ZAYA_RETURN_IF_ERROR(
        backend->Write(weights, cursor, as_stored ? direct->data : packed.data(), vbytes));
    zaya_tensor w{};
    w.buffer = weights.get();
    w.offset = cursor;
    w.dtype = wdtype;
    w.ndim = static_cast<int32_t>(shape.size());
    int i = 0;
    for (int64_t d : shape) w.shape[i++] = d;
    out->w = w;
    cursor += AlignUp(vbytes);
    if (wdtype == ZAYA_DTYPE_I8) {
      // Right after the weight (AlignUp adds nothing to a matrix of whole 64-byte rows): the CPU
      // backend then interleaves the two into its int8 block layout (backend.h weight_prepare).
      const uint64_t sbytes = scales.size() * 4;
      ZAYA_RETURN_IF_ERROR(backend->Write(weights, cursor, scales.data(), sbytes));
      out->scales = MakeTensor(weights.get(), cursor, ZAYA_DTYPE_F32, {rows, zaya_i8_scales(cols)});
      cursor += AlignUp(sbytes);
    }
    // Written in full: the backend may now keep it in a layout of its own (int8 on AVX-512).
    return backend->PrepareWeight(out->w, out->scales);
  };

  const int64_t H = c.hidden_size, V = c.vocab_size, R = c.router_hidden_size, E = c.num_experts,
                I = c.moe_intermediate_size, C = c.conv_channels(), D = c.head_dim;
  ZAYA_RETURN_IF_ERROR(mat("model.embed_tokens.weight", {V, H}, &embed));
  ZAYA_RETURN_IF_ERROR(vec("model.input_hidden_states_bias", H, &embed_in_bias));
  ZAYA_RETURN_IF_ERROR(vec("model.input_hidden_states_scale", H, &embed_in_scale));
  ZAYA_RETURN_IF_ERROR(vec("model.norm.weight", H, &final_norm));
  if (c.tie_word_embeddings) {
    lm_head = embed;
  } else {
    ZAYA_RETURN_IF_ERROR(mat("lm_head.weight", {V, H}, &lm_head));
  }
  layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerWeights& L = layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string a = p + "self_attn.";
    const std::string qkv = a + "qkv_proj.";
    ZAYA_RETURN_IF_ERROR(vec(p + "input_layernorm.weight", H, &L.input_norm));
    ZAYA_RETURN_IF_ERROR(vec(p + "post_attention_layernorm.weight", H, &L.post_attn_norm));
    ZAYA_RETURN_IF_ERROR(mat(qkv + "q_proj.weight", {c.q_dim(), H}, &L.q));
    ZAYA_RETURN_IF_ERROR(mat(qkv + "k_proj.weight", {c.kv_dim(), H}, &L.k));
    ZAYA_RETURN_IF_ERROR(mat(qkv + "v_proj_current.weight", {c.kv_dim() / 2, H}, &L.v_cur));
    ZAYA_RETURN_IF_ERROR(mat(qkv + "v_proj_delayed.weight", {c.kv_dim() / 2, H}, &L.v_del));
    ZAYA_RETURN_IF_ERROR(vec(qkv + "conv_qk_depthwise.weight", C * 2, &L.dw_w));
    ZAYA_RETURN_IF_ERROR(vec(qkv + "conv_qk_depthwise.bias", C, &L.dw_b));
    // Follows the matrices' dtype (bf16 for int8 models): decode reads it every step.
    ZAYA_RETURN_IF_ERROR(
        vec(qkv + "conv_qk_grouped.weight", C * D * 2, &L.gw_w, wdtype != ZAYA_DTYPE_F32));
    {
      // The CCA op multiplies it as C rows of [D, 2] (a matvec per head group of D rows), so it
      // may be kept in a layout like the matrices': the CPU backend's bf16 block layout halved
      // the grouped convolution's time at 16 tokens (docs/performance.md, session 13).
      // As [C / D, D, 2D]: the op takes each head group's D rows on their own, so a layout of
      // row blocks may only be used where a group is whole blocks.
      zaya_tensor rows = L.gw_w;
      rows.ndim = 3;
      rows.shape[0] = C / D;
      rows.shape[1] = D;
      rows.shape[2] = 2 * D;
      ZAYA_RETURN_IF_ERROR(backend->PrepareWeight(rows, zaya_tensor{}));
    }
    ZAYA_RETURN_IF_ERROR(vec(qkv + "conv_qk_grouped.bias", C, &L.gw_b));
    ZAYA_RETURN_IF_ERROR(vec(a + "qk_norm.temp", c.num_kv_heads, &L.temp));
    ZAYA_RETURN_IF_ERROR(mat(a + "o_proj.weight", {H, c.q_dim()}, &L.o));
    const std::string ar = p + "post_attention_residual_scale.";
    ZAYA_RETURN_IF_ERROR(vec(ar + "hidden_states_bias", H, &L.attn_hb));
    ZAYA_RETURN_IF_ERROR(vec(ar + "hidden_states_scale", H, &L.attn_hs));
    ZAYA_RETURN_IF_ERROR(vec(ar + "residual_bias", H, &L.attn_rb));
    ZAYA_RETURN_IF_ERROR(vec(ar + "residual_scale", H, &L.attn_rs));
    const std::string mr = p + "post_mlp_residual_scale.";
    ZAYA_RETURN_IF_ERROR(vec(mr + "hidden_states_bias", H, &L.mlp_hb));
    ZAYA_RETURN_IF_ERROR(vec(mr + "hidden_states_scale", H, &L.mlp_hs));
    ZAYA_RETURN_IF_ERROR(vec(mr + "residual_bias", H, &L.mlp_rb));
    ZAYA_RETURN_IF_ERROR(vec(mr + "residual_scale", H, &L.mlp_rs));
    const std::string g = p + "mlp.gate.";
    ZAYA_RETURN_IF_ERROR(mat(g + "down_proj.weight", {R, H}, &L.r_down));
    ZAYA_RETURN_IF_ERROR(vec(g + "down_proj.bias", R, &L.r_down_b));
    L.has_states_scale = l >= 1;
    if (L.has_states_scale) {
      ZAYA_RETURN_IF_ERROR(vec(g + "router_states_scale", R, &L.r_states_scale));
    }
    ZAYA_RETURN_IF_ERROR(vec(g + "router_mlp.norm.weight", R, &L.r_norm));
    ZAYA_RETURN_IF_ERROR(mat(g + "router_mlp.fc1.weight", {R, R}, &L.r_fc1));
    ZAYA_RETURN_IF_ERROR(vec(g + "router_mlp.fc1.bias", R, &L.r_fc1_b));
    ZAYA_RETURN_IF_ERROR(mat(g + "router_mlp.fc2.weight", {R, R}, &L.r_fc2));
    ZAYA_RETURN_IF_ERROR(vec(g + "router_mlp.fc2.bias", R, &L.r_fc2_b));
    ZAYA_RETURN_IF_ERROR(mat(g + "router_mlp.out_proj.weight", {E + 1, R}, &L.r_out));
    ZAYA_RETURN_IF_ERROR(vec(g + "balancing_biases", E + 1, &L.balancing));
    ZAYA_RETURN_IF_ERROR(mat(p + "mlp.experts.gate_up_proj", {E, 2 * I, H}, &L.gate_up));
    ZAYA_RETURN_IF_ERROR(mat(p + "mlp.experts.down_proj", {E, H, I}, &L.down));
  }
  if (cursor > total) return Internal("weight layout overran its own size computation");
  return Status::Ok();
}

Status ZayaModel::Impl::AllocateState() {
  const ZayaConfig& c = cfg;
  kv_layer_bytes = AlignUp(
      static_cast<uint64_t>(opt.num_kv_blocks * opt.block_tokens * c.kv_dim()) * ElemSize(kvdtype));
  conv_slot_bytes = static_cast<uint64_t>(2 * c.conv_channels()) * 4;
  vstate_slot_bytes = static_cast<uint64_t>(c.kv_dim() / 2) * 4;
  const uint64_t conv_layer = AlignUp(conv_slot_bytes * opt.num_slots);
  const uint64_t v_layer = AlignUp(vstate_slot_bytes * opt.num_slots);
  scale_layer_bytes =
      kvdtype == ZAYA_DTYPE_I8
          ? AlignUp(static_cast<uint64_t>(opt.num_kv_blocks * opt.block_tokens * c.num_kv_heads) *
                    4)
          : 0;
  const uint64_t total =
      (2 * kv_layer_bytes + 2 * scale_layer_bytes + conv_layer + v_layer) * c.num_layers;
  ZAYA_ASSIGN_OR_RETURN(state, backend->Alloc(ZAYA_BUFFER_STATE, total));
  uint64_t off = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    k_cache.push_back(
        MakeTensor(state.get(), off, kvdtype,
                   {opt.num_kv_blocks, opt.block_tokens, c.num_kv_heads, c.head_dim}));
    off += kv_layer_bytes;
    v_cache.push_back(
        MakeTensor(state.get(), off, kvdtype,
                   {opt.num_kv_blocks, opt.block_tokens, c.num_kv_heads, c.head_dim}));
    off += kv_layer_bytes;
    if (scale_layer_bytes != 0) {
      for (auto* scales : {&k_scale, &v_scale}) {
        scales->push_back(MakeTensor(state.get(), off, ZAYA_DTYPE_F32,
                                     {opt.num_kv_blocks, opt.block_tokens, c.num_kv_heads}));
        off += scale_layer_bytes;
      }
    }
    conv_state.push_back(
        MakeTensor(state.get(), off, ZAYA_DTYPE_F32, {opt.num_slots, 2, c.conv_channels()}));
    off += conv_layer;
    v_state.push_back(
        MakeTensor(state.get(), off, ZAYA_DTYPE_F32, {opt.num_slots, c.kv_dim() / 2}));
    off += v_layer;
  }
  return Status::Ok();
}

Status ZayaModel::Impl::AllocateScratch() {
  const ZayaConfig& c = cfg;
  const uint64_t T = static_cast<uint64_t>(opt.max_step_tokens);
  const uint64_t S = static_cast<uint64_t>(opt.max_step_sequences);
  uint64_t off = 0;
  auto take = [&](uint64_t elems) {
    const uint64_t at = off;
    off += AlignUp(elems * 4);
    return at;
  };
  s_h = take(T * c.hidden_size);
  s_a = take(T * c.hidden_size);
  s_qk0 = take(T * c.q_dim());
  s_k0 = take(T * c.kv_dim());
  s_vcur = take(T * c.kv_dim() / 2);
  s_vdel = take(T * c.kv_dim() / 2);
  s_q = take(T * c.q_dim());
  s_k = take(T * c.kv_dim());
  s_v = take(T * c.kv_dim());
  s_attn = take(T * c.q_dim());
  s_o = take(T * c.hidden_size);
  s_r[0] = take(T * c.router_hidden_size);
  s_r[1] = take(T * c.router_hidden_size);
  s_rn = take(T * c.router_hidden_size);
  s_r1 = take(T * c.router_hidden_size);
  s_r2 = take(T * c.router_hidden_size);
  s_rl = take(T * (c.num_experts + 1));
  s_expert = take(T);
  s_weight = take(T);
  s_moe = take(T * c.hidden_size);
  s_last = take(S * c.hidden_size);
  s_logits = take(S * c.vocab_size);
  if (opt.record_routing) s_routing = take(T * c.num_layers);
  ZAYA_ASSIGN_OR_RETURN(scratch, backend->Alloc(ZAYA_BUFFER_SCRATCH, off));
  uint64_t hoff = 0;
  auto htake = [&](uint64_t elems) {
    const uint64_t at = hoff;
    hoff += AlignUp(elems * 4);
    return at;
  };
  h_ids = htake(T);
  h_seq = htake(T);
  h_pos = htake(T);
  h_slot = htake(S);
  h_gather = htake(S);
  h_table = htake(S * static_cast<uint64_t>(max_blocks));
  host_bytes = hoff;
  ZAYA_ASSIGN_OR_RETURN(host, backend->Alloc(ZAYA_BUFFER_HOST, hoff));
  host_staging.resize(hoff);
  return Status::Ok();
}

Status ZayaModel::Forward(std::span<const StepSequence> batch, std::vector<float>* logits) {
  Impl& m = *impl_;
  const ZayaConfig& c = m.cfg;
  const int64_t S = static_cast<int64_t>(batch.size());
  if (S == 0) return Status::Ok();
  if (S > m.opt.max_step_sequences) {
    return InvalidArgument("step has " + std::to_string(S) + " sequences; at most " +
                           std::to_string(m.opt.max_step_sequences));
  }
  int64_t T = 0;
  for (const auto& s : batch) T += static_cast<int64_t>(s.tokens.size());
  if (T == 0) return InvalidArgument("step has no tokens");
  if (T > m.opt.max_step_tokens) {
    return InvalidArgument("step has " + std::to_string(T) + " tokens; at most " +
                           std::to_string(m.opt.max_step_tokens));
  }

  // Stage index tensors: ids, seq_of_token, positions, slots, block tables, rows to gather.
  auto* base = m.host_staging.data();
  auto* ids = reinterpret_cast<int32_t*>(base + m.h_ids);
  auto* seq = reinterpret_cast<int32_t*>(base + m.h_seq);
  auto* pos = reinterpret_cast<int32_t*>(base + m.h_pos);
  auto* slot = reinterpret_cast<int32_t*>(base + m.h_slot);
  auto* gather = reinterpret_cast<int32_t*>(base + m.h_gather);
  auto* table = reinterpret_cast<int32_t*>(base + m.h_table);
  int64_t t = 0, n_logits = 0;
  for (int64_t s = 0; s < S; ++s) {
    const StepSequence& q = batch[s];
    if (q.tokens.empty()) return InvalidArgument("a sequence in the step has no tokens");
    if (q.slot < 0 || q.slot >= m.opt.num_slots) return InvalidArgument("state slot out of range");
    const int64_t end_pos = q.start_pos + static_cast<int64_t>(q.tokens.size());
    if (q.start_pos < 0 || end_pos > c.max_position_embeddings) {
      return OutOfRange("sequence would reach position " + std::to_string(end_pos) +
                        ", beyond the model's " + std::to_string(c.max_position_embeddings));
    }
    const int64_t blocks_needed = (end_pos + m.opt.block_tokens - 1) / m.opt.block_tokens;
    if (static_cast<int64_t>(q.block_table.size()) < blocks_needed ||
        blocks_needed > m.max_blocks) {
      return InvalidArgument("block table covers " + std::to_string(q.block_table.size()) +
                             " blocks; the sequence needs " + std::to_string(blocks_needed));
    }
    slot[s] = q.slot;
    for (int64_t b = 0; b < m.max_blocks; ++b) {
      table[s * m.max_blocks + b] =
          b < static_cast<int64_t>(q.block_table.size()) ? q.block_table[b] : -1;
    }
    for (size_t i = 0; i < q.tokens.size(); ++i, ++t) {
      if (q.tokens[i] < 0 || q.tokens[i] >= c.vocab_size) {
        return InvalidArgument("token id " + std::to_string(q.tokens[i]) +
                               " is outside the vocabulary (" + std::to_string(c.vocab_size) + ")");
      }
      ids[t] = q.tokens[i];
      seq[t] = static_cast<int32_t>(s);
      pos[t] = q.start_pos + static_cast<int32_t>(i);
    }
    if (q.want_logits) gather[n_logits++] = static_cast<int32_t>(t - 1);
  }
  ZAYA_RETURN_IF_ERROR(m.backend->Write(m.host, 0, base, m.host_bytes));

  zaya_buffer* sc = m.scratch.get();
  zaya_buffer* hb = m.host.get();
  const int64_t H = c.hidden_size, R = c.router_hidden_size, E = c.num_experts;
  auto F = [&](uint64_t off, std::initializer_list<int64_t> shape) {
    return MakeTensor(sc, off, ZAYA_DTYPE_F32, shape);
  };
  const zaya_tensor h = F(m.s_h, {T, H});
  const zaya_tensor a = F(m.s_a, {T, H});
  const zaya_tensor t_ids = MakeTensor(hb, m.h_ids, ZAYA_DTYPE_I32, {T});
  const zaya_tensor t_seq = MakeTensor(hb, m.h_seq, ZAYA_DTYPE_I32, {T});
  const zaya_tensor t_pos = MakeTensor(hb, m.h_pos, ZAYA_DTYPE_I32, {T});
  const zaya_tensor t_slot = MakeTensor(hb, m.h_slot, ZAYA_DTYPE_I32, {S});
  const zaya_tensor t_table = MakeTensor(hb, m.h_table, ZAYA_DTYPE_I32, {S, m.max_blocks});
  const float eps = static_cast<float>(c.rms_norm_eps);

  auto& ops = m.ops;
  ops.clear();
  auto rmsnorm = [&](const zaya_tensor& x, const zaya_tensor& w, const zaya_tensor& y) {
    zaya_op op = Op(ZAYA_OP_RMSNORM);
    op.src[0] = x;
    op.src[1] = w;
    op.dst[0] = y;
    op.f[0] = eps;
    ops.push_back(op);
  };
  auto matmul = [&](const zaya_tensor& x, const DeviceMatrix& w, const zaya_tensor* bias,
                    const zaya_tensor& y, zaya_activation act) {
    zaya_op op = Op(ZAYA_OP_MATMUL);
    op.src[0] = x;
    op.src[1] = w.w;
    if (bias != nullptr) op.src[2] = *bias;
    op.src[3] = w.scales;
    op.dst[0] = y;
    op.i[0] = act;
    ops.push_back(op);
  };
  auto merge = [&](const zaya_tensor& branch, const zaya_tensor& hb_, const zaya_tensor& hs,
                   const zaya_tensor& rb, const zaya_tensor& rs) {
    zaya_op op = Op(ZAYA_OP_MERGE);
    op.src[0] = branch;
    op.src[1] = hb_;
    op.src[2] = hs;
    op.src[3] = rb;
    op.src[4] = rs;
    op.dst[0] = h;
    ops.push_back(op);
  };

  {
    zaya_op op = Op(ZAYA_OP_EMBED);
    op.src[0] = t_ids;
    op.src[1] = m.embed.w;
    op.src[2] = m.embed_in_bias;
    op.src[3] = m.embed_in_scale;
    op.src[4] = m.embed.scales;
    op.dst[0] = h;
    ops.push_back(op);
  }
  const zaya_tensor vcur = F(m.s_vcur, {T, c.kv_dim() / 2});
  const zaya_tensor vdel = F(m.s_vdel, {T, c.kv_dim() / 2});
  const zaya_tensor tq = F(m.s_q, {T, c.q_dim()});
  const zaya_tensor tk = F(m.s_k, {T, c.kv_dim()});
  const zaya_tensor tv = F(m.s_v, {T, c.kv_dim()});
  const zaya_tensor attn = F(m.s_attn, {T, c.q_dim()});
  const zaya_tensor o = F(m.s_o, {T, H});
  const zaya_tensor rn = F(m.s_rn, {T, R});
  const zaya_tensor r1 = F(m.s_r1, {T, R});
  const zaya_tensor r2 = F(m.s_r2, {T, R});
  const zaya_tensor rl = F(m.s_rl, {T, E + 1});
  const zaya_tensor expert = MakeTensor(sc, m.s_expert, ZAYA_DTYPE_I32, {T});
  const zaya_tensor weight = F(m.s_weight, {T});
  const zaya_tensor moe = F(m.s_moe, {T, H});
  const zaya_tensor q0 = F(m.s_qk0, {T, c.q_dim()});
  const zaya_tensor k0 = F(m.s_k0, {T, c.kv_dim()});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& L = m.layers[l];
    rmsnorm(h, L.input_norm, a);
    matmul(a, L.q, nullptr, q0, ZAYA_ACT_NONE);
    matmul(a, L.k, nullptr, k0, ZAYA_ACT_NONE);
    matmul(a, L.v_cur, nullptr, vcur, ZAYA_ACT_NONE);
    matmul(a, L.v_del, nullptr, vdel, ZAYA_ACT_NONE);
    {
      zaya_op op = Op(ZAYA_OP_CCA);
      op.src[0] = q0;
      op.src[1] = k0;
      op.src[2] = vcur;
      op.src[3] = vdel;
      op.src[4] = L.dw_w;
      op.src[5] = L.dw_b;
      op.src[6] = L.gw_w;
      op.src[7] = L.gw_b;
      op.src[8] = L.temp;
      op.dst[0] = tq;
      op.dst[1] = tk;
      op.dst[2] = tv;
      op.dst[3] = m.conv_state[l];
      op.dst[4] = m.v_state[l];
      op.aux[0] = t_seq;
      op.aux[1] = t_slot;
      op.aux[2] = t_pos;
      op.i[0] = c.num_heads;
      op.i[1] = c.num_kv_heads;
      op.i[2] = c.head_dim;
      op.i[3] = c.rope_dims;
      op.f[0] = static_cast<float>(c.rope_theta);
      op.f[1] = std::numeric_limits<float>::epsilon();
      ops.push_back(op);
    }
    {
      zaya_op op = Op(ZAYA_OP_ATTENTION);
      op.src[0] = tq;
      op.src[1] = tk;
      op.src[2] = tv;
      op.dst[0] = attn;
      op.dst[1] = m.k_cache[l];
      op.dst[2] = m.v_cache[l];
      if (m.scale_layer_bytes != 0) {
        op.dst[3] = m.k_scale[l];
        op.dst[4] = m.v_scale[l];
      }
      op.aux[0] = t_seq;
      op.aux[1] = t_table;
      op.aux[2] = t_pos;
      op.i[0] = c.num_heads;
      op.i[1] = c.num_kv_heads;
      op.i[2] = c.head_dim;
      op.i[3] = m.opt.block_tokens;
      op.f[0] = 1.f / std::sqrt(static_cast<float>(c.head_dim));
      ops.push_back(op);
    }
    matmul(attn, L.o, nullptr, o, ZAYA_ACT_NONE);
    merge(o, L.attn_hb, L.attn_hs, L.attn_rb, L.attn_rs);
    rmsnorm(h, L.post_attn_norm, a);
    // Router with its depth recurrence: r_l = down(m) + b + r_{l-1} * states_scale.
    const zaya_tensor r = F(m.s_r[l % 2], {T, R});
    const zaya_tensor r_prev = F(m.s_r[(l + 1) % 2], {T, R});
    matmul(a, L.r_down, &L.r_down_b, r, ZAYA_ACT_NONE);
    if (L.has_states_scale) {
      zaya_op op = Op(ZAYA_OP_MUL_ADD);
      op.src[0] = r;
      op.src[1] = r_prev;
      op.src[2] = L.r_states_scale;
      op.dst[0] = r;
      ops.push_back(op);
    }
    rmsnorm(r, L.r_norm, rn);
    matmul(rn, L.r_fc1, &L.r_fc1_b, r1, ZAYA_ACT_GELU);
    matmul(r1, L.r_fc2, &L.r_fc2_b, r2, ZAYA_ACT_GELU);
    matmul(r2, L.r_out, nullptr, rl, ZAYA_ACT_NONE);
    {
      zaya_op op = Op(ZAYA_OP_ROUTER_SELECT);
      op.src[0] = rl;
      op.src[1] = L.balancing;
      op.dst[0] = expert;
      op.dst[1] = weight;
      ops.push_back(op);
    }
    if (m.opt.record_routing) {
      zaya_op op = Op(ZAYA_OP_COPY);
      op.src[0] = expert;
      op.dst[0] =
          MakeTensor(sc, m.s_routing + static_cast<uint64_t>(l * T) * 4, ZAYA_DTYPE_I32, {T});
      op.i[0] = T * 4;
      ops.push_back(op);
    }
    {
      zaya_op op = Op(ZAYA_OP_MOE);
      op.src[0] = a;
      op.src[1] = L.gate_up.w;
      op.src[2] = L.down.w;
      op.src[3] = expert;
      op.src[4] = weight;
      op.src[5] = L.gate_up.scales;
      op.src[6] = L.down.scales;
      op.dst[0] = moe;
      op.i[0] = E;
      ops.push_back(op);
    }
    merge(moe, L.mlp_hb, L.mlp_hs, L.mlp_rb, L.mlp_rs);
  }
  if (n_logits > 0) {
    const zaya_tensor last = F(m.s_last, {n_logits, H});
    const zaya_tensor out = F(m.s_logits, {n_logits, c.vocab_size});
    zaya_op g = Op(ZAYA_OP_GATHER_ROWS);
    g.src[0] = h;
    g.aux[0] = MakeTensor(hb, m.h_gather, ZAYA_DTYPE_I32, {n_logits});
    g.dst[0] = last;
    ops.push_back(g);
    rmsnorm(last, m.final_norm, last);
    matmul(last, m.lm_head, nullptr, out, ZAYA_ACT_NONE);
  }
  ZAYA_RETURN_IF_ERROR(m.backend->Execute(ops));
  m.routed_tokens = T;
  if (logits != nullptr) {
    logits->resize(static_cast<size_t>(n_logits * c.vocab_size));
    if (n_logits > 0) {
      ZAYA_RETURN_IF_ERROR(m.backend->Read(m.scratch, m.s_logits, logits->data(),
                                           static_cast<uint64_t>(n_logits * c.vocab_size) * 4));
    }
  }
  return Status::Ok();
}

Status ZayaModel::ReadLastRouting(std::vector<std::vector<int32_t>>* out) {
  Impl& m = *impl_;
  if (!m.opt.record_routing || m.routed_tokens < 0) {
    return FailedPrecondition(
        "routing is recorded only with ModelOptions::record_routing, after a "
        "Forward");
  }
  const int64_t T = m.routed_tokens;
  out->assign(static_cast<size_t>(m.cfg.num_layers), std::vector<int32_t>(static_cast<size_t>(T)));
  for (int64_t l = 0; l < m.cfg.num_layers; ++l) {
    ZAYA_RETURN_IF_ERROR(m.backend->Read(m.scratch, m.s_routing + static_cast<uint64_t>(l * T) * 4,
                                         (*out)[l].data(), static_cast<uint64_t>(T) * 4));
  }
  return Status::Ok();
}

Status ZayaModel::ResetSlot(int32_t slot) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.opt.num_slots) return InvalidArgument("state slot out of range");
  std::vector<float> zeros(m.conv_slot_bytes / 4, 0.f);
  for (int64_t l = 0; l < m.cfg.num_layers; ++l) {
    ZAYA_RETURN_IF_ERROR(m.backend->Write(m.state,
                                          m.conv_state[l].offset + slot * m.conv_slot_bytes,
                                          zeros.data(), m.conv_slot_bytes));
    ZAYA_RETURN_IF_ERROR(m.backend->Write(m.state, m.v_state[l].offset + slot * m.vstate_slot_bytes,
                                          zeros.data(), m.vstate_slot_bytes));
  }
  return Status::Ok();
}

Status ZayaModel::CopySlot(int32_t src, int32_t dst) {
  Impl& m = *impl_;
  if (src < 0 || dst < 0 || src >= m.opt.num_slots || dst >= m.opt.num_slots) {
    return InvalidArgument("state slot out of range");
  }
  std::vector<zaya_op> ops;
  for (int64_t l = 0; l < m.cfg.num_layers; ++l) {
    zaya_op a = Op(ZAYA_OP_COPY);
    a.src[0] = m.conv_state[l];
    a.src[0].offset += src * m.conv_slot_bytes;
    a.dst[0] = m.conv_state[l];
    a.dst[0].offset += dst * m.conv_slot_bytes;
    a.i[0] = static_cast<int64_t>(m.conv_slot_bytes);
    ops.push_back(a);
    zaya_op b = Op(ZAYA_OP_COPY);
    b.src[0] = m.v_state[l];
    b.src[0].offset += src * m.vstate_slot_bytes;
    b.dst[0] = m.v_state[l];
    b.dst[0].offset += dst * m.vstate_slot_bytes;
    b.i[0] = static_cast<int64_t>(m.vstate_slot_bytes);
    ops.push_back(b);
  }
  return m.backend->Execute(ops);
}

Status ZayaModel::CopyKvBlock(int32_t src, int32_t dst) {
  Impl& m = *impl_;
  if (src < 0 || dst < 0 || src >= m.opt.num_kv_blocks || dst >= m.opt.num_kv_blocks) {
    return InvalidArgument("KV block out of range");
  }
  const uint64_t block_bytes =
      static_cast<uint64_t>(m.opt.block_tokens * m.cfg.kv_dim()) * ElemSize(m.kvdtype);
  const uint64_t scale_bytes = static_cast<uint64_t>(m.opt.block_tokens * m.cfg.num_kv_heads) * 4;
  std::vector<zaya_op> ops;
  auto copy = [&](const zaya_tensor& t, uint64_t bytes) {
    zaya_op a = Op(ZAYA_OP_COPY);
    a.src[0] = t;
    a.src[0].offset += src * bytes;
    a.dst[0] = t;
    a.dst[0].offset += dst * bytes;
    a.i[0] = static_cast<int64_t>(bytes);
    ops.push_back(a);
  };
  for (int64_t l = 0; l < m.cfg.num_layers; ++l) {
    copy(m.k_cache[l], block_bytes);
    copy(m.v_cache[l], block_bytes);
    if (m.scale_layer_bytes != 0) {
      copy(m.k_scale[l], scale_bytes);
      copy(m.v_scale[l], scale_bytes);
    }
  }
  return m.backend->Execute(ops);
}

}  // namespace zaya
