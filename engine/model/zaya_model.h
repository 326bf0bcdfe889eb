// ZayaModel: the ZAYA1 forward pass (ZAYA1.md), written once against the backend ABI. It uploads a
// Checkpoint's weights to a Backend, owns the per-sequence state memory (paged KV cache + CCA conv
// and value state), and runs one forward step for a batch of sequences: any mix of prompt chunks
// (prefill) and single decode tokens.
//
// Memory: weights are held at `weights_dtype` (matrices; vectors stay f32); the KV cache is
// `num_kv_blocks` blocks of `block_tokens` tokens x layers x (K,V) x kv_heads x head_dim at
// `kv_dtype` (int8: plus a f32 scale per position, layer, K/V and KV head); CCA state is
// `num_slots` x layers x (2 x conv_channels + kv_dim/2) f32. Which blocks and slots a sequence uses
// is the caller's business (engine/state's KvBlockPool); the model only reads and writes where it
// is told.
//
// Thread safety: one thread drives a ZayaModel (and its Backend) at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/weights/checkpoint.h"
#include "plugins/loader.h"

namespace zaya {

struct ModelOptions {
  std::string weights_dtype = "bf16";  // "bf16" | "f32" | "int8" (a scale per 128 values)
  std::string kv_dtype = "f32";        // "f32" | "bf16" | "int8" (a f32 scale per row and KV head)
  int64_t max_step_tokens = 512;       // tokens one Forward may hold (all sequences together)
  int64_t max_step_sequences = 64;     // sequences one Forward may hold
  int64_t num_kv_blocks = 256;
  int64_t block_tokens = 16;
  int64_t num_slots = 64;               // CCA state slots (one per live sequence)
  int64_t max_blocks_per_sequence = 0;  // 0 = enough for max_position_embeddings
  uint64_t weights_budget = 0;          // 0 = unchecked; else refuse to load above it
  // Keep each step's router choices for LastRouting() (one small copy per layer and a read back
  // per step: for benchmarks and tests, off in the daemon).
  bool record_routing = false;
};

// One sequence's part of a step.
struct StepSequence {
  int32_t slot = 0;                      // CCA state slot
  std::span<const int32_t> tokens;       // tokens to run, at positions start_pos...
  int32_t start_pos = 0;                 // tokens already in this sequence's cache
  std::span<const int32_t> block_table;  // KV block ids; must cover start_pos + tokens.size()
  bool want_logits = true;               // logits of the last token of this chunk
};

class ZayaModel {
 public:
  static Result<std::unique_ptr<ZayaModel>> Load(const Checkpoint& checkpoint, Backend& backend,
                                                 const ModelOptions& options);

  // Bytes of weights this checkpoint occupies at `weights_dtype`, computed before loading (for
  // budgets and error messages).
  static uint64_t WeightBytes(const ZayaConfig& config, const std::string& weights_dtype);
  // Bytes of one KV block and of one CCA state slot.
  static uint64_t KvBlockBytes(const ZayaConfig& config, int64_t block_tokens,
                               const std::string& kv_dtype);
  static uint64_t SlotBytes(const ZayaConfig& config);
  // The KV cache dtype the daemon uses with `weights_dtype` and model.kv_dtype (and `zaya bench`,
  // so that its attention reads what the daemon's does): `kv_dtype` itself unless "auto", which
  // is f32 with f32 weights, else bf16.
  static std::string KvDtypeFor(const std::string& weights_dtype,
                                const std::string& kv_dtype = "auto");

  ~ZayaModel();

  const ZayaConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  int64_t vocab_size() const { return config_.vocab_size; }
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t state_bytes() const { return state_bytes_; }

  // Runs one step. `logits` receives vocab_size floats per sequence with want_logits, in order.
  Status Forward(std::span<const StepSequence> batch, std::vector<float>* logits);

  // With options().record_routing: reads the expert each token of the last Forward was routed to,
  // per layer ([num_layers][tokens of the step, in batch order]; num_experts = the skip expert).
  // Forward only copies the choices on the device; this call reads them back (a synchronous read
  // per layer), so a benchmark can keep it outside its timing. FailedPrecondition without
  // record_routing or before the first Forward.
  Status ReadLastRouting(std::vector<std::vector<int32_t>>* out);

  // Zeroes a slot's CCA state (a new sequence starts from zero padding).
  Status ResetSlot(int32_t slot);
  // Copies CCA state (fork) and KV blocks (copy-on-write).
  Status CopySlot(int32_t src, int32_t dst);
  Status CopyKvBlock(int32_t src, int32_t dst);

 private:
  struct Impl;
  explicit ZayaModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  ZayaConfig config_;
  ModelOptions options_;
  uint64_t weight_bytes_ = 0;
  uint64_t state_bytes_ = 0;
};

}  // namespace zaya
