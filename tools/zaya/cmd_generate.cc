// `zaya generate`: runs the model in-process (no daemon) for one prompt; the developer's tool for
// checking a checkpoint and a backend.
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model/zaya_model.h"
#include "engine/sampler/sampler.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/weights/checkpoint.h"
#include "plugins/loader.h"
#include "tools/zaya/command.h"

namespace zaya::cli {
namespace {

Result<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      return InvalidArgument("--prompt-ids: '" + item + "' is not a token id");
    }
  }
  if (ids.empty()) return InvalidArgument("--prompt-ids is empty");
  return ids;
}

int Generate(const Command& self, const std::vector<std::string>& argv) {
  std::string err;
  auto args = Args::Parse(
      argv,
      {"model", "prompt", "prompt-ids", "max-tokens", "temperature", "seed", "top-k", "top-p",
       "min-p", "backend", "threads", "weights-dtype", "dump-logits", "plugin-dir"},
      {"greedy", "json", "no-stop"}, &err);
  if (!args) return UsageError(self, err);
  if (auto rc = RefusePositionals(self, *args,
                                  "quote a prompt of several words: --prompt \"Hello world\""))
    return *rc;
  if (!args->Has("model")) return UsageError(self, "--model DIR is required");
  if (args->Has("prompt") == args->Has("prompt-ids")) {
    return UsageError(self, "give exactly one of --prompt TEXT and --prompt-ids 1,2,3");
  }
  auto fail = [&](const Status& s) {
    std::fprintf(stderr, "zaya generate: %s\n", s.ToString().c_str());
    return 1;
  };
  // The sampling ranges are the sampler's (Sampler::Create), checked here so that a bad value is a
  // usage error before the model loads; --max-tokens and --threads are bounded as [model]
  // max_context and [backend] threads are in zayad.toml.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const auto max_tokens = IntFlag(*args, "max-tokens", 32, 0, 16777216, &err);
  const auto temperature = NumberFlag(*args, "temperature", 0, 0, kInf, &err);
  const auto seed = SeedFlag(*args, "seed", 0, &err);
  const auto top_k = IntFlag(*args, "top-k", 0, 0, INT32_MAX, &err);
  const auto top_p = NumberFlag(*args, "top-p", 1, 0, 1, &err, /*above_lo=*/true);
  const auto min_p = NumberFlag(*args, "min-p", 0, 0, 1, &err);
  const auto threads = IntFlag(*args, "threads", 0, 0, 1024, &err);
  if (!err.empty()) return UsageError(self, err);
  SamplingParams sp;
  sp.max_tokens = static_cast<int>(*max_tokens);
  sp.temperature = args->Has("greedy") ? 0.0 : *temperature;
  sp.seed = *seed;
  sp.top_k = static_cast<int>(*top_k);
  sp.top_p = *top_p;
  sp.min_p = *min_p;

  const std::string dir = *args->Get("model");
  auto ck = Checkpoint::Open(dir);
  if (!ck.ok()) return fail(ck.status());
  const ZayaConfig& cfg = (*ck)->config();

  std::optional<Tokenizer> tok;
  if (auto t = Tokenizer::Load(dir); t.ok()) tok.emplace(std::move(*t));
  std::vector<int32_t> prompt;
  if (args->Has("prompt")) {
    if (!tok) return fail(NotFound("--prompt needs a tokenizer.json in " + dir));
    // As the daemon tokenizes a raw prompt: BOS, and no post-processor suffix.
    auto ids = tok->Encode(*args->Get("prompt"), Tokenizer::AddSpecial::kPrefix);
    if (!ids.ok()) return fail(ids.status());
    prompt = std::move(*ids);
  } else {
    auto ids = ParseIds(*args->Get("prompt-ids"));
    if (!ids.ok()) return fail(ids.status());
    prompt = std::move(*ids);
  }

  auto backend = Backend::Open(args->GetOr("backend", "cpu"), args->GetOr("plugin-dir", ""), 0,
                               static_cast<int>(*threads));
  if (!backend.ok()) return fail(backend.status());

  const int64_t total = static_cast<int64_t>(prompt.size()) + sp.max_tokens;
  ModelOptions mo;
  mo.weights_dtype = args->GetOr("weights-dtype", "bf16");
  mo.block_tokens = 16;
  mo.num_kv_blocks = (total + mo.block_tokens - 1) / mo.block_tokens + 1;
  mo.max_blocks_per_sequence = mo.num_kv_blocks;
  mo.max_step_tokens = std::max<int64_t>(static_cast<int64_t>(prompt.size()), 1);
  mo.max_step_sequences = 1;
  mo.num_slots = 1;
  auto model = ZayaModel::Load(**ck, **backend, mo);
  if (!model.ok()) return fail(model.status());
  auto sampler = Sampler::Create(sp);
  if (!sampler.ok()) return fail(sampler.status());

  std::vector<int32_t> table(static_cast<size_t>(mo.num_kv_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<int32_t> eos;
  if (!args->Has("no-stop")) {
    if (tok) eos = tok->eos_ids();
    for (int64_t e : cfg.eos_token_ids) eos.push_back(static_cast<int32_t>(e));
  }
  std::vector<int32_t> out;
  std::vector<float> logits;
  int32_t pos = 0;
  std::vector<int32_t> step = prompt;
  for (int i = 0; i <= sp.max_tokens; ++i) {
    StepSequence s;
    s.slot = 0;
    s.tokens = step;
    s.start_pos = pos;
    s.block_table = table;
    s.want_logits = true;
    Status st = (*model)->Forward(std::span<const StepSequence>(&s, 1), &logits);
    if (!st.ok()) return fail(st);
    pos += static_cast<int32_t>(step.size());
    if (i == 0 && args->Has("dump-logits")) {
      std::ofstream f(*args->Get("dump-logits"), std::ios::binary);
      f.write(reinterpret_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.size() * sizeof(float)));
      if (!f) return fail(Unavailable("cannot write " + *args->Get("dump-logits")));
    }
    if (i == sp.max_tokens) break;
    const int32_t next = sampler->Sample(logits);
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    out.push_back(next);
    step.assign(1, next);
  }
  const std::string text = tok ? tok->Decode(out, /*skip_special_tokens=*/false) : std::string();
  if (args->Has("json")) {
    nlohmann::json j = {{"ids", out}, {"text", text}, {"prompt_tokens", prompt.size()}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    for (size_t i = 0; i < out.size(); ++i) std::printf("%s%d", i ? "," : "", out[i]);
    std::printf("\n%s\n", text.c_str());
  }
  return 0;
}

const CommandRegistrar kGenerate(Command{
    "generate", "run the model in-process on one prompt (no daemon)",
    "zaya generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N] "
    "[--greedy | --temperature T --seed S] [--top-k K] [--top-p P] [--min-p P] [--backend cpu] "
    "[--threads N] [--weights-dtype bf16|f32|int8] [--json] [--dump-logits FILE] [--no-stop]",
    [](const std::vector<std::string>& a) { return Generate(Registry().at("generate"), a); }});

}  // namespace
}  // namespace zaya::cli
