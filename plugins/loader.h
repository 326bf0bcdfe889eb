// Loading backend plugins (plugins/include/zaya/backend.h) and owning their objects.
//
// Ownership: BackendPlugin is a dlopened shared object; it is never dlclosed (a plugin may leave
// threads or atexit handlers behind, and the process loads a handful at most). Backend owns one
// zaya_backend instance and frees it (joining its threads) in its destructor; BufferHandle owns one
// zaya_buffer and must not outlive its Backend.
//
// Thread safety: a Backend is used by one thread at a time (the scheduler's); the loader functions
// are thread-compatible.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "zaya/backend.h"

namespace zaya {

struct BackendPlugin {
  std::string path;
  const zaya_backend_api* api = nullptr;
  int score = 1;             // from zaya_backend_score when exported
  std::string score_reason;  // why the score is 0, when it is
};

// dlopens `path` (RTLD_NOW | RTLD_LOCAL) and checks the entry point, ABI version, table size and
// score. Errors name the file and say what to do; a score of 0 is returned as kUnavailable with the
// plugin's reason.
Result<BackendPlugin> LoadBackendPlugin(const std::string& path);

// The folder plugins are looked up in: `configured` when non-empty, else $ZAYA_PLUGIN_DIR, else the
// first plugins/ holding libzaya-backend-cpu.so in a folder above this executable (a build tree),
// else the install dir.
std::string ResolvePluginDir(const std::string& configured);

class Backend;

class BufferHandle {
 public:
  BufferHandle() = default;
  BufferHandle(Backend* backend, zaya_buffer* buffer, uint64_t bytes, zaya_buffer_kind kind)
      : backend_(backend), buffer_(buffer), bytes_(bytes), kind_(kind) {}
  BufferHandle(BufferHandle&& o) noexcept { *this = std::move(o); }
  BufferHandle& operator=(BufferHandle&& o) noexcept;
  BufferHandle(const BufferHandle&) = delete;
  BufferHandle& operator=(const BufferHandle&) = delete;
  ~BufferHandle();

  zaya_buffer* get() const { return buffer_; }
  uint64_t bytes() const { return bytes_; }

 private:
  Backend* backend_ = nullptr;
  zaya_buffer* buffer_ = nullptr;
  uint64_t bytes_ = 0;
  zaya_buffer_kind kind_ = ZAYA_BUFFER_SCRATCH;
};

class Backend {
 public:
  // Creates an instance of a loaded plugin.
  static Result<std::unique_ptr<Backend>> Create(const BackendPlugin& plugin, int device_index,
                                                 int threads);

  // Picks and creates a backend by kind: "cpu", "hip" or "auto" (the highest-scoring usable plugin,
  // preferring GPUs; falls back to the CPU with one log line).
  static Result<std::unique_ptr<Backend>> Open(const std::string& kind,
                                               const std::string& plugin_dir, int device_index,
                                               int threads);

  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& name() const { return name_; }
  const zaya_backend_api* api() const { return api_; }
  Result<zaya_device_info> DeviceInfo();

  Result<BufferHandle> Alloc(zaya_buffer_kind kind, uint64_t bytes);
  Status Write(const BufferHandle& buffer, uint64_t offset, const void* src, uint64_t bytes);
  Status Read(const BufferHandle& buffer, uint64_t offset, void* dst, uint64_t bytes);
  Status Execute(const std::vector<zaya_op>& ops);
  // weight_prepare (ABI 1.1) for a matrix written in full; OK and nothing else where the plugin
  // does not have it (ABI 1.0, or NULL). `scales` may be an absent tensor.
  Status PrepareWeight(const zaya_tensor& weight, const zaya_tensor& scales);

  // Bytes currently allocated, by kind (host-side accounting of what this process asked for).
  uint64_t allocated(zaya_buffer_kind kind) const { return allocated_[kind]; }

 private:
  friend class BufferHandle;
  Backend(std::string name, const zaya_backend_api* api, zaya_backend* backend)
      : name_(std::move(name)), api_(api), backend_(backend) {}
  Status FromPlugin(zaya_status s, const char* what);
  void Free(zaya_buffer* buffer, uint64_t bytes, zaya_buffer_kind kind);

  std::string name_;
  const zaya_backend_api* api_;
  zaya_backend* backend_;
  uint64_t allocated_[4] = {0, 0, 0, 0};
};

}  // namespace zaya
