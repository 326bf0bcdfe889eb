// `zaya bench`: this machine's read bandwidth and GEMM rate, then the model's decode and prefill
// speed against the memory-bandwidth roofline (docs/performance.md, "Method"). Runs the model
// in-process like `zaya generate`. Progress goes to stderr, the table (or JSON) to stdout.
//
// Bytes of weights read per decode step: the dense weights once (every matrix but the experts; the
// tied embedding counts once, as the lm_head that is read in full), plus each distinct expert the
// step's tokens were routed to, counted from the router's real choices (ZayaModel's
// record_routing, read outside the timing). The JSON also gives the uniform-routing estimate
// E * (1 - (1 - 1/(E+1))^B) experts per layer for comparison (batch 16 of the 8B shape: ~9.9 of
// 16). Plus the KV cache a step reads: each token attends to its sequence's K and V rows, one per
// position so far, in every layer; at the default 8-token context that is <1% of the bytes, at
// `--context 4096` (what Markovian RSA's candidates decode at) more than the weights.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/model/zaya_model.h"
#include "engine/weights/checkpoint.h"
#include "plugins/loader.h"
#include "tools/zaya/command.h"
#include "tools/zaya/read_bandwidth.h"

namespace zaya::cli {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Device memory bandwidth of a GPU backend: one ZAYA_OP_COPY of `bytes` between two device buffers,
// counted as bytes read + bytes written (how STREAM's copy and vendors' figures count), median of
// `reps` after one warm-up. Execute returns only when the copy has finished, so the host clock is
// the device's time plus one launch.
Result<double> DeviceCopyBandwidth(Backend& be, uint64_t bytes, int reps) {
  ZAYA_ASSIGN_OR_RETURN(auto a, be.Alloc(ZAYA_BUFFER_SCRATCH, bytes));
  ZAYA_ASSIGN_OR_RETURN(auto b, be.Alloc(ZAYA_BUFFER_SCRATCH, bytes));
  zaya_op op{};
  op.type = ZAYA_OP_COPY;
  const int64_t n = static_cast<int64_t>(bytes);
  op.src[0] = zaya_tensor{a.get(), 0, ZAYA_DTYPE_F32, 1, {n / 4, 0, 0, 0}};
  op.dst[0] = zaya_tensor{b.get(), 0, ZAYA_DTYPE_F32, 1, {n / 4, 0, 0, 0}};
  op.i[0] = n;
  std::vector<double> rates;
  for (int r = 0; r < reps + 1; ++r) {
    const auto t0 = Clock::now();
    ZAYA_RETURN_IF_ERROR(be.Execute({op}));
    const double s = Seconds(t0, Clock::now());
    if (r > 0) rates.push_back(2.0 * static_cast<double>(bytes) / s);
  }
  return Median(rates);
}

// GFLOP/s of one [T,K] x [N,K]^T matmul through the backend. The CPU backend runs f32 weights
// through OpenBLAS sgemm panels (the GEMM peak), and bf16 ones, where its AVX-512 tiles
// run, through those tiles at every batch (kernels.h TilesAtEveryBatch), else through OpenBLAS
// on converted panels.
Result<double> GemmRate(Backend& be, int32_t dtype, int64_t t, int64_t k, int64_t n, int reps) {
  const uint64_t esz = dtype == ZAYA_DTYPE_F32 ? 4 : 2;
  ZAYA_ASSIGN_OR_RETURN(auto x, be.Alloc(ZAYA_BUFFER_SCRATCH, t * k * 4));
  ZAYA_ASSIGN_OR_RETURN(auto w, be.Alloc(ZAYA_BUFFER_WEIGHTS, n * k * esz));
  ZAYA_ASSIGN_OR_RETURN(auto y, be.Alloc(ZAYA_BUFFER_SCRATCH, t * n * 4));
  std::vector<float> xs(static_cast<size_t>(t * k));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : xs) v = nd(rng);
  ZAYA_RETURN_IF_ERROR(be.Write(x, 0, xs.data(), xs.size() * 4));
  std::vector<uint16_t> ws(static_cast<size_t>(n * k * esz / 2), 0x3c00);  // small non-zero values
  ZAYA_RETURN_IF_ERROR(be.Write(w, 0, ws.data(), ws.size() * 2));
  zaya_op op{};
  op.type = ZAYA_OP_MATMUL;
  op.src[0] = zaya_tensor{x.get(), 0, ZAYA_DTYPE_F32, 2, {t, k, 0, 0}};
  op.src[1] = zaya_tensor{w.get(), 0, dtype, 2, {n, k, 0, 0}};
  op.dst[0] = zaya_tensor{y.get(), 0, ZAYA_DTYPE_F32, 2, {t, n, 0, 0}};
  std::vector<double> rates;
  for (int r = 0; r < reps + 1; ++r) {
    const auto t0 = Clock::now();
    ZAYA_RETURN_IF_ERROR(be.Execute({op}));
    const double s = Seconds(t0, Clock::now());
    if (r > 0) rates.push_back(2.0 * t * k * n / s / 1e9);  // the first run warms up
  }
  return Median(rates);
}

struct ByteModel {
  double dense = 0;       // bytes read once per step
  double per_expert = 0;  // one expert of one layer
  // Multiply-adds per decoded token: every weight but those of the experts it is not routed to
  // (and an untied model's input table). A token sent to the skip expert does fewer; the norms'
  // and biases' few elements count as if they were matrix rows.
  double macs_per_token = 0;
  int64_t experts = 0, layers = 0;
  double ExpertsTouched(int64_t batch) const {  // per layer, see the file comment
    return experts * (1.0 - std::pow(1.0 - 1.0 / static_cast<double>(experts + 1),
                                     static_cast<double>(batch)));
  }
  double StepBytes(int64_t batch) const {
    return dense + per_expert * ExpertsTouched(batch) * static_cast<double>(layers);
  }
};

ByteModel Bytes(const ZayaConfig& c, const std::string& dtype) {
  const double esz = dtype == "f32" ? 4 : dtype == "int8" ? 1 : 2;
  const double H = static_cast<double>(c.hidden_size),
               I = static_cast<double>(c.moe_intermediate_size);
  ByteModel m;
  m.experts = c.num_experts;
  m.layers = c.num_layers;
  m.per_expert = 3 * I * H * esz;
  if (dtype == "int8") {
    m.per_expert += (2 * I * static_cast<double>(zaya_i8_scales(c.hidden_size)) +
                     H * static_cast<double>(zaya_i8_scales(c.moe_intermediate_size))) *
                    4;
  }
  double total = static_cast<double>(ZayaModel::WeightBytes(c, dtype));
  m.dense = total - m.per_expert * static_cast<double>(c.num_experts * c.num_layers);
  m.macs_per_token = static_cast<double>(ZayaModel::WeightBytes(c, "f32")) / 4 -
                     3 * I * H * static_cast<double>((c.num_experts - 1) * c.num_layers);
  if (!c.tie_word_embeddings) {
    m.dense -= static_cast<double>(c.vocab_size) * H * esz;  // the input table: one row per token
    m.macs_per_token -= static_cast<double>(c.vocab_size) * H;
  }
  return m;
}

// One side of a comparison: the weights' and the KV cache's dtypes.
struct Variant {
  std::string weights, kv;
};

// Teacher-forced greedy agreement of `test` against `ref` (int8 against bf16 weights, or an int8
// KV cache against a bf16 one): both models see ref's greedy continuation of one prompt; counts
// the steps whose test argmax equals ref's and the logits error. Free-running agreement is not the
// measure: a random-weight model's logits are nearly flat, so the first flipped argmax sends the
// two continuations apart for good.
int CompareGreedy(const Checkpoint& ck, Backend& be, int64_t tokens, bool json,
                  const Variant (&variants)[2], const std::string& what) {
  const ZayaConfig& cfg = ck.config();
  const std::vector<int32_t> prompt = {static_cast<int32_t>(std::max<int64_t>(cfg.bos_token_id, 2)),
                                       300, 301, 302};
  ModelOptions mo;
  mo.block_tokens = 16;
  mo.num_kv_blocks = (tokens + static_cast<int64_t>(prompt.size())) / mo.block_tokens + 2;
  mo.max_blocks_per_sequence = mo.num_kv_blocks;
  mo.max_step_tokens = static_cast<int64_t>(prompt.size());
  mo.max_step_sequences = 1;
  mo.num_slots = 1;
  std::unique_ptr<ZayaModel> models[2];
  for (int m = 0; m < 2; ++m) {
    mo.weights_dtype = variants[m].weights;
    mo.kv_dtype = variants[m].kv;
    auto model = ZayaModel::Load(ck, be, mo);
    if (!model.ok()) {
      std::fprintf(stderr, "zaya bench: %s\n", model.status().ToString().c_str());
      return 1;
    }
    models[m] = std::move(*model);
  }
  std::vector<int32_t> table(static_cast<size_t>(mo.num_kv_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<int32_t> step = prompt;
  int32_t pos = 0;
  int64_t agree = 0;
  double max_abs = 0, sq_err = 0, sq_ref = 0, count = 0;
  std::vector<float> logits[2];
  for (int64_t i = 0; i < tokens; ++i) {
    int32_t best[2] = {0, 0};
    for (int m = 0; m < 2; ++m) {
      StepSequence s;
      s.tokens = step;
      s.start_pos = pos;
      s.block_table = table;
      Status st = models[m]->Forward(std::span<const StepSequence>(&s, 1), &logits[m]);
      if (!st.ok()) {
        std::fprintf(stderr, "zaya bench: %s\n", st.ToString().c_str());
        return 1;
      }
      best[m] = static_cast<int32_t>(std::max_element(logits[m].begin(), logits[m].end()) -
                                     logits[m].begin());
    }
    for (size_t j = 0; j < logits[0].size(); ++j) {
      const double d = static_cast<double>(logits[1][j]) - logits[0][j];
      max_abs = std::max(max_abs, std::fabs(d));
      sq_err += d * d;
      sq_ref += static_cast<double>(logits[0][j]) * logits[0][j];
      count += 1;
    }
    agree += best[0] == best[1];
    pos += static_cast<int32_t>(step.size());
    step.assign(1, best[0]);
  }
  const double rms_err = std::sqrt(sq_err / count), rms_ref = std::sqrt(sq_ref / count);
  if (json) {
    nlohmann::json j = {
        {"compare", what},
        {"reference", {{"weights_dtype", variants[0].weights}, {"kv_dtype", variants[0].kv}}},
        {"test", {{"weights_dtype", variants[1].weights}, {"kv_dtype", variants[1].kv}}},
        {"tokens", tokens},
        {"greedy_agreement", static_cast<double>(agree) / tokens},
        {"logits_max_abs_error", max_abs},
        {"logits_rms_error", rms_err},
        {"logits_rms", rms_ref}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "%s over %lld teacher-forced greedy tokens: %.1f%% agreement, logits error max %.4g, rms "
        "%.4g (logits rms %.4g)\n",
        what.c_str(), static_cast<long long>(tokens), 100.0 * agree / tokens, max_abs, rms_err,
        rms_ref);
  }
  return 0;
}

struct DecodeResult {
  int64_t batch = 0;
  double kv_bytes = 0;  // of step_bytes: the KV cache rows the step's attention read
  double tok_s = 0, step_bytes = 0, roofline_tok_s = 0, experts_per_layer = 0, experts_estimate = 0;
  double gmac_s = 0;  // tok_s x multiply-adds per token
  // Against the bandwidth measured just before and after each repetition (0 on a GPU): the median
  // of the repetitions' fractions, and of those bandwidths.
  double local_fraction = 0, local_bandwidth = 0;
};

int Bench(const Command& self, const std::vector<std::string>& argv) {
  std::string err;
  auto args = Args::Parse(argv,
                          {"model", "threads", "weights-dtype", "backend", "plugin-dir", "steps",
                           "prefill-tokens", "reps", "batches", "bandwidth-mib", "compare-int8",
                           "context", "kv-dtype", "compare-kv-int8"},
                          {"json", "skip-gemm"}, &err);
  if (!args) return UsageError(self, err);
  if (auto rc = RefusePositionals(self, *args)) return *rc;
  if (!args->Has("model")) return UsageError(self, "--model DIR is required");
  // Upper bounds as zayad.toml allows ([backend] threads, [scheduler] max_running_sequences,
  // [model] max_context); the bandwidth buffer up to 1 TiB.
  const auto threads_flag = IntFlag(*args, "threads", 0, 0, 1024, &err);
  const auto steps_flag = IntFlag(*args, "steps", 8, 1, 1000000, &err);
  const auto reps_flag = IntFlag(*args, "reps", 3, 1, 1000000, &err);
  const auto prefill_flag = IntFlag(*args, "prefill-tokens", 512, 1, 16777216, &err);
  const auto bw_mib_flag = IntFlag(*args, "bandwidth-mib", 1024, 16, 1 << 20, &err);
  const auto batches_flag = IntListFlag(*args, "batches", "1,8,16", 1, 65536, &err);
  const auto compare_flag = IntFlag(*args, "compare-int8", 0, 1, 16777216, &err);
  const auto compare_kv_flag = IntFlag(*args, "compare-kv-int8", 0, 1, 16777216, &err);
  const auto context_flag = IntFlag(*args, "context", 8, 1, 16777216, &err);
  if (!err.empty()) return UsageError(self, err);
  int threads = static_cast<int>(*threads_flag);
  const int steps = static_cast<int>(*steps_flag), reps = static_cast<int>(*reps_flag);
  const int bw_mib = static_cast<int>(*bw_mib_flag);
  const int64_t prefill = *prefill_flag;
  const std::vector<int64_t> batches(batches_flag->begin(), batches_flag->end());
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string wdtype = args->GetOr("weights-dtype", "bf16");
  const std::string kv_flag = args->GetOr("kv-dtype", "auto");
  if (kv_flag != "auto" && kv_flag != "f32" && kv_flag != "bf16" && kv_flag != "int8") {
    return UsageError(self, "--kv-dtype must be auto, f32, bf16 or int8, not '" + kv_flag + "'");
  }
  if (args->Has("compare-int8") && args->Has("compare-kv-int8")) {
    return UsageError(self, "--compare-int8 and --compare-kv-int8 are separate runs; give one");
  }
  if (args->Has("compare-int8") || args->Has("compare-kv-int8")) {
    const bool kv = args->Has("compare-kv-int8");
    const int64_t n = kv ? *compare_kv_flag : *compare_flag;
    auto ck = Checkpoint::Open(*args->Get("model"));
    if (!ck.ok()) {
      std::fprintf(stderr, "zaya bench: %s\n", ck.status().ToString().c_str());
      return 1;
    }
    auto be =
        Backend::Open(args->GetOr("backend", "cpu"), args->GetOr("plugin-dir", ""), 0, threads);
    if (!be.ok()) {
      std::fprintf(stderr, "zaya bench: %s\n", be.status().ToString().c_str());
      return 1;
    }
    // int8 weights against bf16 ones, both with f32 caches (as since session 2, so that the
    // recorded agreement stays comparable); or an int8 KV cache against a bf16 one, both with
    // --weights-dtype.
    const Variant weights[2] = {{"bf16", "f32"}, {"int8", "f32"}};
    const Variant caches[2] = {{wdtype, "bf16"}, {wdtype, "int8"}};
    return kv ? CompareGreedy(**ck, **be, n, args->Has("json"), caches,
                              "int8 KV cache vs bf16 (" + wdtype + " weights)")
              : CompareGreedy(**ck, **be, n, args->Has("json"), weights, "int8 vs bf16");
  }
  auto fail = [&](const Status& s) {
    std::fprintf(stderr, "zaya bench: %s\n", s.ToString().c_str());
    return 1;
  };
  auto progress = [](const std::string& m) { std::fprintf(stderr, "zaya bench: %s\n", m.c_str()); };

  const std::string kind = args->GetOr("backend", "cpu");
  auto backend = Backend::Open(kind, args->GetOr("plugin-dir", ""), 0, threads);
  if (!backend.ok()) return fail(backend.status());
  // The roofline is the memory the weights live in: host RAM for the CPU backend, the device's
  // memory for a GPU backend.
  const bool device_memory = kind != "cpu";
  auto device_info = (*backend)->DeviceInfo();
  if (!device_info.ok()) return fail(device_info.status());
  const std::string device(device_info->name, strnlen(device_info->name, sizeof device_info->name));
  double bandwidth = 0;
  if (device_memory) {
    progress("measuring device memory bandwidth (copy of " + std::to_string(bw_mib) + " MiB)");
    auto bw = DeviceCopyBandwidth(**backend, static_cast<uint64_t>(bw_mib) << 20, 5);
    if (!bw.ok()) return fail(bw.status());
    bandwidth = *bw;
  }
  // The read test's buffers are allocated before the model loads and kept: on huge pages
  // (large_pages.h) like the weights, which a buffer allocated after a 17 GB bf16 load did not
  // always get (memory then too fragmented for 2 MiB pages), and that probe read 28 GB/s where the
  // weights streamed at 27-29: bf16 decode showed 99-104% "of local" (session 23).
  const BandwidthWords roof_words =
      device_memory ? BandwidthWords{} : BandwidthBuffer(static_cast<size_t>(bw_mib) << 20);
  const BandwidthWords probe =
      device_memory ? BandwidthWords{}
                    : BandwidthBuffer(static_cast<size_t>(std::min(bw_mib, 256)) << 20);
  if (!device_memory) {
    progress("measuring read bandwidth (" + std::to_string(bw_mib) + " MiB, " +
             std::to_string(threads) + " threads)");
    bandwidth = ReadBandwidthOn(roof_words, threads, 7);
  }
  double gemm_f32 = 0, gemm_bf16 = 0;
  if (!args->Has("skip-gemm")) {
    progress("measuring GEMM rate through the backend (512 x 2048 x 2048)");
    auto f = GemmRate(**backend, ZAYA_DTYPE_F32, 512, 2048, 2048, reps);
    if (!f.ok()) return fail(f.status());
    auto b = GemmRate(**backend, ZAYA_DTYPE_BF16, 512, 2048, 2048, reps);
    if (!b.ok()) return fail(b.status());
    gemm_f32 = *f;
    gemm_bf16 = *b;
  }

  const std::string dir = *args->Get("model");
  auto ck = Checkpoint::Open(dir);
  if (!ck.ok()) return fail(ck.status());
  const ZayaConfig& cfg = (*ck)->config();
  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());
  // Each decoding sequence starts from a prompt of this many tokens (its context), prefilled
  // untimed, a few sequences a step (one where the prompts are long).
  const int64_t decode_prompt = *context_flag;
  const int64_t prompts_per_step = std::max<int64_t>(1, 128 / decode_prompt);
  if (decode_prompt + (steps + 1) > cfg.max_position_embeddings) {
    return UsageError(self, "--context " + std::to_string(decode_prompt) + " plus " +
                                std::to_string(steps + 1) + " decode steps is beyond the model's " +
                                std::to_string(cfg.max_position_embeddings) + " positions");
  }
  ModelOptions mo;
  mo.weights_dtype = wdtype;
  mo.kv_dtype = ZayaModel::KvDtypeFor(wdtype, kv_flag);
  mo.block_tokens = 16;
  // Each sequence owns a fixed run of blocks: enough for the prefill prompt or prompt + decode.
  const int64_t per_seq =
      (std::max<int64_t>(prefill, decode_prompt + (steps + 1) * 1) + mo.block_tokens) /
          mo.block_tokens +
      1;
  mo.max_blocks_per_sequence = per_seq;
  mo.num_kv_blocks = per_seq * max_batch;
  mo.max_step_tokens = std::max<int64_t>(
      {prefill, decode_prompt * std::min(prompts_per_step, max_batch), max_batch});
  mo.max_step_sequences = max_batch;
  mo.num_slots = max_batch;
  mo.record_routing = true;
  progress("loading " + dir + " as " + wdtype + " (" +
           std::to_string(ZayaModel::WeightBytes(cfg, wdtype) >> 20) + " MiB of weights)");
  const auto load0 = Clock::now();
  auto model = ZayaModel::Load(**ck, **backend, mo);
  if (!model.ok()) return fail(model.status());
  progress("loaded in " + std::to_string(Seconds(load0, Clock::now())) + " s");
  const ByteModel bytes = Bytes(cfg, wdtype);
  // K and V of one position in every layer, at the cache's dtype (int8: with the rows' scales).
  const double kv_position_bytes =
      static_cast<double>(ZayaModel::KvBlockBytes(cfg, 1, mo.kv_dtype));

  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(264, static_cast<int32_t>(cfg.vocab_size - 1));
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(max_batch));
  for (int64_t s = 0; s < max_batch; ++s) {
    tables[s].resize(static_cast<size_t>(per_seq));
    std::iota(tables[s].begin(), tables[s].end(), static_cast<int32_t>(s * per_seq));
  }
  std::vector<float> logits;

  // Decode: B sequences prefilled with a short prompt, then `steps` timed steps of B tokens
  // (after one untimed step); repeated `reps` times, median. On the CPU each repetition is also
  // set against the read bandwidth measured right before and after it (a smaller buffer, still 8x
  // the L3): on a shared machine the bandwidth left to us swings 20-30% within seconds, and the
  // fraction against the run's best bandwidth then says more about the neighbours than the
  // kernels.
  std::vector<DecodeResult> decode;
  std::vector<std::vector<int32_t>> routing;
  for (int64_t batch : batches) {
    progress("decode at batch " + std::to_string(batch));
    std::vector<double> rates, local_fractions, local_bandwidths;
    double touched_sum = 0, kv_sum = 0;
    int64_t touched_steps = 0;
    for (int r = 0; r < reps; ++r) {
      const double rep_touched0 = touched_sum, rep_kv0 = kv_sum;
      const int64_t rep_steps0 = touched_steps;
      std::vector<std::vector<int32_t>> toks(static_cast<size_t>(batch));
      std::vector<StepSequence> seqs(static_cast<size_t>(batch));
      for (int64_t s = 0; s < batch; ++s) {
        Status st = (*model)->ResetSlot(static_cast<int32_t>(s));
        if (!st.ok()) return fail(st);
        for (int64_t i = 0; i < decode_prompt; ++i) toks[s].push_back(tok(rng));
        seqs[s].slot = static_cast<int32_t>(s);
        seqs[s].tokens = toks[s];
        seqs[s].start_pos = 0;
        seqs[s].block_table = tables[s];
      }
      if (decode_prompt > 8) {
        progress("prefilling " + std::to_string(batch) + " x " + std::to_string(decode_prompt) +
                 " tokens of context");
      }
      Status st;
      for (int64_t s0 = 0; s0 < batch; s0 += prompts_per_step) {
        const int64_t n = std::min(prompts_per_step, batch - s0);
        st = (*model)->Forward(std::span<const StepSequence>(seqs.data() + s0, n), &logits);
        if (!st.ok()) return fail(st);
      }
      double local_bw = device_memory ? 0.0 : ReadBandwidthOn(probe, threads, 1);
      double timed = 0;
      for (int i = 0; i <= steps; ++i) {
        for (int64_t s = 0; s < batch; ++s) {
          seqs[s].start_pos += static_cast<int32_t>(seqs[s].tokens.size());
          toks[s].assign(1, tok(rng));  // random next tokens: the routing a real batch sees
          seqs[s].tokens = toks[s];
        }
        const auto t0 = Clock::now();
        st = (*model)->Forward(seqs, &logits);
        if (!st.ok()) return fail(st);
        if (i == 0) continue;  // warm-up step
        timed += Seconds(t0, Clock::now());
        for (const StepSequence& q : seqs) {  // positions 0 .. start_pos attended to
          kv_sum += kv_position_bytes * static_cast<double>(q.start_pos + 1);
        }
        // Outside the timing: which experts this step really read (the skip expert reads none).
        st = (*model)->ReadLastRouting(&routing);
        if (!st.ok()) return fail(st);
        for (const auto& layer : routing) {
          std::vector<bool> seen(static_cast<size_t>(cfg.num_experts), false);
          for (int32_t e : layer) {
            if (e >= 0 && e < cfg.num_experts) seen[static_cast<size_t>(e)] = true;
          }
          touched_sum += static_cast<double>(std::count(seen.begin(), seen.end(), true));
        }
        ++touched_steps;
      }
      rates.push_back(static_cast<double>(batch * steps) / timed);
      if (!device_memory) {
        local_bw = std::max(local_bw, ReadBandwidthOn(probe, threads, 1));
        const double experts = (touched_sum - rep_touched0) /
                               static_cast<double>((touched_steps - rep_steps0) * cfg.num_layers);
        const double rep_bytes =
            bytes.dense + bytes.per_expert * experts * static_cast<double>(cfg.num_layers) +
            (kv_sum - rep_kv0) / static_cast<double>(touched_steps - rep_steps0);
        local_bandwidths.push_back(local_bw);
        local_fractions.push_back(rates.back() * rep_bytes /
                                  (static_cast<double>(batch) * local_bw));
      }
    }
    DecodeResult d;
    d.batch = batch;
    d.tok_s = Median(rates);
    d.experts_estimate = bytes.ExpertsTouched(batch);
    d.experts_per_layer =
        touched_sum / static_cast<double>(std::max<int64_t>(1, touched_steps * cfg.num_layers));
    d.kv_bytes = kv_sum / static_cast<double>(std::max<int64_t>(1, touched_steps));
    d.step_bytes = bytes.dense +
                   bytes.per_expert * d.experts_per_layer * static_cast<double>(cfg.num_layers) +
                   d.kv_bytes;
    d.local_fraction = Median(local_fractions);
    d.local_bandwidth = Median(local_bandwidths);
    decode.push_back(d);
  }
  if (!device_memory) {
    // Measured again with the model loaded and warm: the first measurement sometimes ran while
    // other tenants of this machine (or the kernel reclaiming page cache) held memory bandwidth,
    // which put batch-1 decode above 100% of "roofline". The roofline is a peak: keep the best.
    progress("measuring read bandwidth again, after decode");
    bandwidth = std::max(bandwidth, ReadBandwidthOn(roof_words, threads, 7));
  }
  for (DecodeResult& d : decode) {
    d.roofline_tok_s = static_cast<double>(d.batch) * bandwidth / d.step_bytes;
    d.gmac_s = d.tok_s * bytes.macs_per_token / 1e9;
  }

  // Prefill: one `prefill`-token prompt in one step; median of `reps`.
  progress("prefill of " + std::to_string(prefill) + " tokens");
  std::vector<double> prefill_rates;
  std::vector<int32_t> prompt(static_cast<size_t>(prefill));
  for (int r = 0; r < reps; ++r) {
    for (auto& t : prompt) t = tok(rng);
    Status st = (*model)->ResetSlot(0);
    if (!st.ok()) return fail(st);
    StepSequence s;
    s.slot = 0;
    s.tokens = prompt;
    s.block_table = tables[0];
    const auto t0 = Clock::now();
    st = (*model)->Forward(std::span<const StepSequence>(&s, 1), &logits);
    if (!st.ok()) return fail(st);
    prefill_rates.push_back(static_cast<double>(prefill) / Seconds(t0, Clock::now()));
  }
  const double prefill_tok_s = Median(prefill_rates);
  // FLOPs of the prompt: 2 x (dense matrices but the lm_head + one expert per layer) per token,
  // plus the lm_head once (only the last position's logits are computed); attention ignored.
  // Until session 3 the lm_head (a third of the 8B shape's dense weights) was counted per token,
  // which put 64-token prefill above 100% of the GEMM rate.
  // The prompt needs the head for its last token only.
  const double head_params = static_cast<double>(cfg.vocab_size) * cfg.hidden_size;
  const double per_token_params = bytes.macs_per_token - head_params;
  const double prompt_flops = 2.0 * (per_token_params * static_cast<double>(prefill) + head_params);
  const double prefill_gflops = prefill_tok_s * prompt_flops / static_cast<double>(prefill) / 1e9;

  double batch1 = 0;
  for (const auto& d : decode) {
    if (d.batch == 1) batch1 = d.tok_s;
  }
  if (args->Has("json")) {
    nlohmann::json j;
    j["model"] = dir;
    j["weights_dtype"] = wdtype;
    j["threads"] = threads;
    j["context"] = decode_prompt;
    j["kv_dtype"] = mo.kv_dtype;
    j["backend"] = kind;
    j["device"] = device;
    j["bandwidth_kind"] = device_memory ? "device copy (read + write)" : "host read";
    j["read_bandwidth_gb_s"] = bandwidth / 1e9;
    j["gemm_f32_gflop_s"] = gemm_f32;
    j["gemm_bf16_weights_gflop_s"] = gemm_bf16;
    j["weight_bytes"] = (*model)->weight_bytes();
    j["dense_bytes_per_step"] = bytes.dense;
    j["bytes_per_expert"] = bytes.per_expert;
    j["macs_per_token"] = bytes.macs_per_token;
    for (const auto& d : decode) {
      j["decode"].push_back({{"batch", d.batch},
                             {"tok_s", d.tok_s},
                             {"bytes_per_step", d.step_bytes},
                             {"kv_bytes_per_step", d.kv_bytes},
                             {"experts_per_layer", d.experts_per_layer},
                             {"experts_per_layer_uniform_estimate", d.experts_estimate},
                             {"roofline_tok_s", d.roofline_tok_s},
                             {"roofline_fraction", d.tok_s / d.roofline_tok_s},
                             {"local_bandwidth_gb_s", d.local_bandwidth / 1e9},
                             {"roofline_fraction_local_bandwidth", d.local_fraction},
                             {"speedup_vs_batch1", batch1 > 0 ? d.tok_s / batch1 : 0.0},
                             {"gmac_s", d.gmac_s}});
    }
    j["prefill"] = {{"tokens", prefill},
                    {"tok_s", prefill_tok_s},
                    {"gflop_s", prefill_gflops},
                    {"fraction_of_f32_gemm", gemm_f32 > 0 ? prefill_gflops / gemm_f32 : 0.0},
                    {"fraction_of_bf16_gemm", gemm_bf16 > 0 ? prefill_gflops / gemm_bf16 : 0.0}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model %s, weights %s (%.1f MiB), %d threads, device %s\n", dir.c_str(),
              wdtype.c_str(), static_cast<double>((*model)->weight_bytes()) / (1 << 20), threads,
              device.c_str());
  std::printf("%s %8.2f GB/s\n", device_memory ? "device bandwidth    " : "read bandwidth      ",
              bandwidth / 1e9);
  if (gemm_f32 > 0) {
    std::printf("GEMM 512x2048x2048   %8.1f GFLOP/s f32 weights, %.1f GFLOP/s bf16 weights\n",
                gemm_f32, gemm_bf16);
  }
  std::printf("decode from %lld tokens of context, KV cache in %s\n",
              static_cast<long long>(decode_prompt), mo.kv_dtype.c_str());
  std::printf("\n%-7s %10s %12s %10s %14s %12s %9s %9s %8s %8s\n", "batch", "tok/s", "MiB/step",
              "KV MiB", "experts/layer", "roof tok/s", "of roof", "of local", "x b1", "GMAC/s");
  for (const auto& d : decode) {
    char local[32] = "-";
    if (d.local_fraction > 0)
      std::snprintf(local, sizeof(local), "%.1f%%", 100.0 * d.local_fraction);
    std::printf("%-7lld %10.2f %12.1f %10.1f %14.2f %12.2f %8.1f%% %9s %8.2f %8.1f\n",
                static_cast<long long>(d.batch), d.tok_s, d.step_bytes / (1 << 20),
                d.kv_bytes / (1 << 20), d.experts_per_layer, d.roofline_tok_s,
                100.0 * d.tok_s / d.roofline_tok_s, local, batch1 > 0 ? d.tok_s / batch1 : 0.0,
                d.gmac_s);
  }
  if (!device_memory) {
    std::printf(
        "(of roof: against the run's best read bandwidth; of local: against the bandwidth "
        "measured around each repetition, median)\n");
  }
  std::printf(
      "(GMAC/s: the multiply-adds the decoded tokens needed per second, %.2f G per token; "
      "when it nears the matmuls' arithmetic rate, a batch is bound by arithmetic, not "
      "bytes)\n",
      bytes.macs_per_token / 1e9);
  std::printf("\nprefill %lld tokens  %8.1f tok/s  %8.1f GFLOP/s", static_cast<long long>(prefill),
              prefill_tok_s, prefill_gflops);
  if (gemm_f32 > 0) {
    std::printf("  (%.0f%% of the f32 GEMM rate, %.0f%% of the bf16 one)",
                100.0 * prefill_gflops / gemm_f32, 100.0 * prefill_gflops / gemm_bf16);
  }
  std::printf("\n");
  return 0;
}

const CommandRegistrar kBench(Command{
    "bench", "measure bandwidth, decode and prefill speed against the roofline",
    "zaya bench --model DIR [--json] [--threads N] [--weights-dtype bf16|int8|f32] [--backend "
    "cpu|hip] [--plugin-dir DIR] "
    "[--batches 1,8,16] [--steps N] [--reps N] [--context N] [--kv-dtype auto|f32|bf16|int8] "
    "[--prefill-tokens N] "
    "[--bandwidth-mib N] "
    "[--skip-gemm] | zaya bench --model DIR --compare-int8 TOKENS [--json] | zaya bench --model "
    "DIR "
    "--compare-kv-int8 TOKENS [--weights-dtype D] [--json]",
    [](const std::vector<std::string>& a) { return Bench(Registry().at("bench"), a); }});

}  // namespace
}  // namespace zaya::cli
