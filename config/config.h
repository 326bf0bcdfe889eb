// Typed configuration of zayad, parsed from one TOML file (config/zayad.toml documents every key).
// Sizes are strings with binary units ("512MiB", "4GiB"; plain integers are bytes), durations are
// strings ("250ms", "30s", "5m"). Every error names the file, line and key and says what is
// allowed.
//
// Thread safety: Config is a plain value; the daemon swaps whole Config objects on reload.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace zaya {

struct ModelConfig {
  // Checkpoint folder; a relative path is relative to the config file's folder.
  std::string path = "models/zaya-tiny-reasoner";
  std::string weights_dtype = "bf16";  // "bf16" | "f32" | "int8"
  // KV cache: "auto" (f32 with f32 weights, else bf16) | "f32" | "bf16" | "int8" (half of bf16's
  // bytes with a scale per row; backends with ZAYA_CAP_I8_KV only).
  std::string kv_dtype = "auto";
  int64_t max_context = 0;             // tokens per sequence; 0 = the model's limit
  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

struct BackendConfig {
  std::string kind = "cpu";  // "cpu" | "hip" | "auto"
  std::string plugin_dir;    // empty = the installed or build-tree plugin folder
  int threads = 0;           // 0 = all online cores
  int device = 0;            // device index for GPU backends
  friend bool operator==(const BackendConfig&, const BackendConfig&) = default;
};

struct MemoryConfig {
  uint64_t weights = 2ull << 30;    // resident weight bytes after load-time conversion
  uint64_t state = 1ull << 30;      // KV block pool + CCA state for all sequences
  uint64_t request = 512ull << 20;  // most one request (a whole RSA population) may hold
  int kv_block_tokens = 16;         // tokens per KV block
  bool experts_offload = false;     // not implemented: only false is accepted
  friend bool operator==(const MemoryConfig&, const MemoryConfig&) = default;
};

struct SchedulerConfig {
  int max_queue = 64;              // waiting requests before new ones get `busy`
  int max_running_sequences = 64;  // sequences decoded together in one step
  int prefill_chunk = 256;         // prompt tokens per sequence per step
  int max_step_tokens = 2048;      // all tokens (decode + prefill) in one step
  std::chrono::milliseconds drain_timeout{30000};
  friend bool operator==(const SchedulerConfig&, const SchedulerConfig&) = default;
};

// Highest sampling temperature accepted anywhere: rsa.temperature, a solve's or a generate's
// temperature. Beyond it sampling is close to uniform noise, almost surely a mistake; the protocol
// set 5 first (docs/protocol.md), and the config and the RSA resolver agree with it so that a
// default is never one a request could not send.
inline constexpr double kMaxTemperature = 5.0;

struct RsaConfig {
  // Defaults for `solve`; each has a per-request override bounded by the max_* limits.
  std::string mode = "rsa";  // "single" | "parallel" | "rsa"
  int population = 16;       // N
  int subset = 4;            // C
  int rounds = 2;            // T
  int tail = 4096;           // tau, tokens
  int budget = 16384;        // beta, tokens per trace
  double temperature = 0.8;
  double top_p = 1.0;
  int max_population = 64;
  int max_rounds = 8;
  int max_tail = 8192;
  int max_budget = 32768;
  std::string answer_extractor = "boxed";  // "boxed" | "answer_tag" | "last_number" | "regex"
  std::string answer_regex;                // used when answer_extractor = "regex"; group 1 = answer
  std::string aggregation_template;        // empty = the built-in template (docs/rsa.md)
  friend bool operator==(const RsaConfig&, const RsaConfig&) = default;
};

struct IpcConfig {
  std::string endpoint = "ipc:///run/zayad/zayad.sock";
  uint64_t max_message = 1ull << 20;  // bytes of one JSON frame
  int max_json_depth = 32;
  int max_requests_per_client = 8;
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{15000};
  int send_hwm = 10000;  // queued outgoing messages per client before it is treated as gone
  friend bool operator==(const IpcConfig&, const IpcConfig&) = default;
};

struct LogConfig {
  std::string level = "info";   // "err" | "warning" | "notice" | "info" | "debug"
  std::string target = "auto";  // "auto" | "journal" | "stderr"
  friend bool operator==(const LogConfig&, const LogConfig&) = default;
};

struct Config {
  std::string source;  // the file it came from ("" for built-in defaults)
  ModelConfig model;
  BackendConfig backend;
  MemoryConfig memory;
  SchedulerConfig scheduler;
  RsaConfig rsa;
  IpcConfig ipc;
  LogConfig log;
  friend bool operator==(const Config&, const Config&) = default;
};

// Parses and validates `path`. Relative model.path / backend.plugin_dir are resolved against the
// directory of `path` (made absolute first, so the result holds absolute paths). Errors look like:
//   "/etc/zayad/zayad.toml:12: [memory] request = "8GiB" is larger than memory.state (1GiB); ..."
// Every problem found is reported, one per line of the message, ordered by line. The file must be
// at most kMaxConfigBytes. Nothing is checked on disk beyond reading `path` (the model folder is
// the engine's business).
Result<Config> LoadConfig(const std::string& path);

// Same, from text (for tests and fuzzing); `name` is used in messages in place of a path, and
// relative paths are resolved against its directory part (left relative when it has none).
Result<Config> ParseConfig(std::string_view toml_text, const std::string& name);

inline constexpr std::size_t kMaxConfigBytes = 1u << 20;

// Whether a solve with the [rsa] defaults fits a model context of `context` tokens (rsa.budget, and
// in rsa mode with rounds subset * tail + budget, must be below it). The loader applies the same
// rule to model.max_context when it is set; with 0 the context is the checkpoint's, known only once
// the model is loaded, so the engine checks it then and on reload. `origin` says where the context
// comes from, for the message.
Status CheckRsaFitsContext(const RsaConfig& rsa, int64_t context, std::string_view origin);

// The keys ("memory.state", ...) that differ between `current` and `next` and only take effect on a
// restart. Live on reload (SIGHUP): log.level, every rsa.* key, scheduler.max_queue and the ipc
// per-client limits (max_message, max_json_depth, max_requests_per_client). The daemon applies the
// live keys and reports these. Empty when nothing restart-only changed.
std::vector<std::string> KeysNeedingRestart(const Config& current, const Config& next);

// The effective configuration as TOML (every key, units spelled out), for `zayad --check-config`.
std::string FormatConfig(const Config& config);

// "512MiB" -> 536870912. Accepts B, KiB, MiB, GiB, TiB (and KB/MB/GB/TB as powers of 1000), any
// letter case, an optional space before the unit, a plain integer as bytes, and a decimal number
// when the result is a whole number of bytes ("1.5GiB" yes, "0.1KiB" no).
Result<uint64_t> ParseSize(std::string_view text);
// "250ms" -> 250ms; accepts ms, s, m, h, decimals that come to whole milliseconds ("1.5s") and
// several parts ("1m30s"). A unit is required.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
// Inverses of the above using the largest unit that represents the value exactly
// (536870912 -> "512MiB", 1000 -> "1000B", 90000ms -> "90s").
std::string FormatSize(uint64_t bytes);
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace zaya
