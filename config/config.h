// Typed configuration of zayad, parsed from one TOML file (config/zayad.toml documents every key).
// Sizes are strings with binary units ("512MiB", "4GiB"; plain integers are bytes), durations are
// strings ("250ms", "30s", "5m"). Every error names the file, line and key and says what is allowed.
//
// Thread safety: Config is a plain value; the daemon swaps whole Config objects on reload.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace zaya {

struct ModelConfig {
  std::string path = "models/zaya-tiny-reasoner";  // checkpoint folder; relative = to the config file
  std::string weights_dtype = "bf16";               // "bf16" | "f32" | "int8"
  int64_t max_context = 0;                          // tokens per sequence; 0 = the model's limit
};

struct BackendConfig {
  std::string kind = "cpu";      // "cpu" | "hip" | "auto"
  std::string plugin_dir;        // empty = the installed or build-tree plugin folder
  int threads = 0;               // 0 = all online cores
  int device = 0;                // device index for GPU backends
};

struct MemoryConfig {
  uint64_t weights = 2ull << 30;  // resident weight bytes after load-time conversion
  uint64_t state = 1ull << 30;    // KV block pool + CCA state for all sequences
  uint64_t request = 512ull << 20;  // most one request (a whole RSA population) may hold
  int kv_block_tokens = 16;       // tokens per KV block
  bool experts_offload = false;   // page expert weights in through an LRU instead of keeping them
};

struct SchedulerConfig {
  int max_queue = 64;               // waiting requests before new ones get `busy`
  int max_running_sequences = 64;   // sequences decoded together in one step
  int prefill_chunk = 256;          // prompt tokens per sequence per step
  int max_step_tokens = 2048;       // all tokens (decode + prefill) in one step
  std::chrono::milliseconds drain_timeout{30000};
};

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
};

struct IpcConfig {
  std::string endpoint = "ipc:///run/zayad/zayad.sock";
  uint64_t max_message = 1ull << 20;  // bytes of one JSON frame
  int max_json_depth = 32;
  int max_requests_per_client = 8;
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{15000};
  int send_hwm = 10000;  // queued outgoing messages per client before it is treated as gone
};

struct LogConfig {
  std::string level = "info";  // "err" | "warning" | "notice" | "info" | "debug"
  std::string target = "auto";  // "auto" | "journal" | "stderr"
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
};

// Parses and validates `path`. Relative model.path / backend.plugin_dir are resolved against the
// directory of `path`. Errors look like:
//   "/etc/zayad/zayad.toml:12: [memory] request = "8GiB" is larger than memory.state (1GiB); ..."
Result<Config> LoadConfig(const std::string& path);

// Same, from text (for tests and fuzzing); `name` is used in messages in place of a path.
Result<Config> ParseConfig(std::string_view toml_text, const std::string& name);

// The effective configuration as TOML (every key, units spelled out), for `zayad --check-config`.
std::string FormatConfig(const Config& config);

// "512MiB" -> 536870912. Accepts B, KiB, MiB, GiB, TiB (and KB/MB/GB as powers of 1000).
Result<uint64_t> ParseSize(std::string_view text);
// "250ms" -> 250ms; accepts ms, s, m, h.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
std::string FormatSize(uint64_t bytes);
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace zaya
