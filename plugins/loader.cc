#include "plugins/loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/log.h"

#ifndef ZAYA_PLUGIN_INSTALL_DIR
#define ZAYA_PLUGIN_INSTALL_DIR "/usr/lib/zayad/plugins"
#endif

namespace zaya {
namespace fs = std::filesystem;

namespace {

void LogFromPlugin(void* /*user*/, int priority, const char* message) {
  if (priority < 3) priority = 3;
  if (priority > 7) priority = 7;
  auto p = static_cast<log::Priority>(priority);
  if (log::Enabled(p)) log::Write(p, message != nullptr ? message : "", {{"BACKEND", "plugin"}});
}

std::string PluginFileName(const std::string& kind) { return "libzaya-backend-" + kind + ".so"; }

}  // namespace

Result<BackendPlugin> LoadBackendPlugin(const std::string& path) {
  BackendPlugin plugin;
  plugin.path = path;
  if (!fs::exists(path)) {
    return NotFound("backend plugin " + path +
                    " does not exist; check backend.plugin_dir or reinstall zayad");
  }
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return Unavailable("cannot load backend plugin " + path + ": " + (err ? err : "unknown error") +
                       " (a missing runtime library or a file that is not a plugin)");
  }
  // From here on the handle is never closed: see loader.h.
  auto entry = reinterpret_cast<zaya_backend_entry_v1_fn>(dlsym(handle, ZAYA_BACKEND_ENTRY_SYMBOL));
  if (entry == nullptr) {
    return InvalidArgument("backend plugin " + path + " does not export " +
                           ZAYA_BACKEND_ENTRY_SYMBOL + "; it is not a zayad backend plugin");
  }
  if (auto score =
          reinterpret_cast<zaya_backend_score_fn>(dlsym(handle, ZAYA_BACKEND_SCORE_SYMBOL))) {
    const char* reason = nullptr;
    plugin.score = score(&reason);
    if (plugin.score <= 0) {
      plugin.score = 0;
      plugin.score_reason = reason != nullptr ? reason : "the plugin gave no reason";
      return Unavailable("backend plugin " + path +
                         " cannot run on this machine: " + plugin.score_reason);
    }
  }
  const zaya_backend_api* api = entry();
  if (api == nullptr) {
    return InvalidArgument("backend plugin " + path + ": " + ZAYA_BACKEND_ENTRY_SYMBOL +
                           "() returned NULL");
  }
  if (api->abi_major != ZAYA_BACKEND_ABI_MAJOR) {
    return FailedPrecondition(
        "backend plugin " + path + " implements backend ABI " + std::to_string(api->abi_major) +
        "." + std::to_string(api->abi_minor) + " but this zayad needs ABI " +
        std::to_string(ZAYA_BACKEND_ABI_MAJOR) + ".x; install the plugin built with this zayad");
  }
  // ABI 1.0's table ends at execute, and 2.0 requires no more; later members are optional, read
  // where struct_size covers them.
  const size_t abi_1_0_size = offsetof(zaya_backend_api, execute) + sizeof(api->execute);
  if (api->struct_size < abi_1_0_size) {
    return FailedPrecondition("backend plugin " + path + " has a function table of " +
                              std::to_string(api->struct_size) + " bytes, smaller than the " +
                              std::to_string(abi_1_0_size) + " bytes ABI " +
                              std::to_string(ZAYA_BACKEND_ABI_MAJOR) + ".0 requires; it is broken");
  }
  const void* required[] = {reinterpret_cast<const void*>(api->create),
                            reinterpret_cast<const void*>(api->destroy),
                            reinterpret_cast<const void*>(api->last_error),
                            reinterpret_cast<const void*>(api->device_info),
                            reinterpret_cast<const void*>(api->buffer_alloc),
                            reinterpret_cast<const void*>(api->buffer_free),
                            reinterpret_cast<const void*>(api->buffer_write),
                            reinterpret_cast<const void*>(api->buffer_read),
                            reinterpret_cast<const void*>(api->execute)};
  for (const void* fn : required) {
    if (fn == nullptr) {
      return InvalidArgument("backend plugin " + path +
                             " leaves a required ABI 1.0 function empty; it is broken");
    }
  }
  // Backend::Create builds a std::string from the name, which throws on NULL.
  if (api->name == nullptr) {
    return InvalidArgument("backend plugin " + path +
                           " leaves its required name empty (NULL); it is broken");
  }
  plugin.api = api;
  return plugin;
}

std::string ResolvePluginDir(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (const char* env = std::getenv("ZAYA_PLUGIN_DIR"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // Build tree: build/<preset>/{daemon,tools/zaya,tests/...}/binary -> build/<preset>/plugins.
    for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path();
         dir = dir.parent_path()) {
      if (fs::exists(dir / "plugins" / PluginFileName("cpu"))) return (dir / "plugins").string();
    }
  }
  return ZAYA_PLUGIN_INSTALL_DIR;
}

BufferHandle& BufferHandle::operator=(BufferHandle&& o) noexcept {
  if (this != &o) {
    if (backend_ != nullptr && buffer_ != nullptr) backend_->Free(buffer_, bytes_, kind_);
    backend_ = o.backend_;
    buffer_ = o.buffer_;
    bytes_ = o.bytes_;
    kind_ = o.kind_;
    o.backend_ = nullptr;
    o.buffer_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

BufferHandle::~BufferHandle() {
  if (backend_ != nullptr && buffer_ != nullptr) backend_->Free(buffer_, bytes_, kind_);
}

Result<std::unique_ptr<Backend>> Backend::Create(const BackendPlugin& plugin, int device_index,
                                                 int threads) {
  zaya_backend_options options{};
  options.struct_size = sizeof(options);
  options.device_index = device_index;
  options.threads = threads;
  options.log = &LogFromPlugin;
  options.log_user = nullptr;
  zaya_backend* instance = nullptr;
  zaya_status s = plugin.api->create(&options, &instance);
  if (s != ZAYA_STATUS_OK || instance == nullptr) {
    return Unavailable("backend " + std::string(plugin.api->name) + " (" + plugin.path +
                       ") failed to start: status " + std::to_string(s));
  }
  return std::unique_ptr<Backend>(new Backend(plugin.api->name, plugin.api, instance));
}

Result<std::unique_ptr<Backend>> Backend::Open(const std::string& kind,
                                               const std::string& plugin_dir, int device_index,
                                               int threads) {
  const std::string dir = ResolvePluginDir(plugin_dir);
  if (kind == "cpu" || kind == "hip") {
    ZAYA_ASSIGN_OR_RETURN(BackendPlugin plugin,
                          LoadBackendPlugin(dir + "/" + PluginFileName(kind)));
    return Create(plugin, device_index, threads);
  }
  if (kind != "auto") {
    return InvalidArgument("unknown backend kind '" + kind + "'; use cpu, hip or auto");
  }
  auto gpu = LoadBackendPlugin(dir + "/" + PluginFileName("hip"));
  if (gpu.ok()) {
    auto created = Create(*gpu, device_index, threads);
    if (created.ok()) return created;
    ZAYA_LOG(kNotice, "backend auto: the HIP backend failed to start (" +
                          created.status().message() + "); using the CPU backend");
  } else {
    ZAYA_LOG(kNotice, "backend auto: no usable GPU backend (" + gpu.status().message() +
                          "); using the CPU backend");
  }
  ZAYA_ASSIGN_OR_RETURN(BackendPlugin cpu, LoadBackendPlugin(dir + "/" + PluginFileName("cpu")));
  return Create(cpu, device_index, threads);
}

Backend::~Backend() {
  if (backend_ != nullptr) api_->destroy(backend_);
}

Status Backend::FromPlugin(zaya_status s, const char* what) {
  if (s == ZAYA_STATUS_OK) return Status::Ok();
  const char* err = api_->last_error(backend_);
  std::string msg = "backend " + name_ + ": " + what + " failed: " + (err ? err : "no detail");
  switch (s) {
    case ZAYA_STATUS_OUT_OF_MEMORY:
      return OverBudget(msg + " (device out of memory)");
    case ZAYA_STATUS_INVALID_ARGUMENT:
      return InvalidArgument(msg);
    case ZAYA_STATUS_UNSUPPORTED:
      return Unimplemented(msg);
    case ZAYA_STATUS_DEVICE_ERROR:
      return Unavailable(msg);
    default:
      return Internal(msg);
  }
}

Result<zaya_device_info> Backend::DeviceInfo() {
  zaya_device_info info{};
  info.struct_size = sizeof(info);
  ZAYA_RETURN_IF_ERROR(FromPlugin(api_->device_info(backend_, &info), "device_info"));
  return info;
}

Result<BufferHandle> Backend::Alloc(zaya_buffer_kind kind, uint64_t bytes) {
  zaya_buffer* buffer = nullptr;
  ZAYA_RETURN_IF_ERROR(FromPlugin(api_->buffer_alloc(backend_, kind, bytes, &buffer), "alloc"));
  allocated_[kind] += bytes;
  return BufferHandle(this, buffer, bytes, kind);
}

void Backend::Free(zaya_buffer* buffer, uint64_t bytes, zaya_buffer_kind kind) {
  api_->buffer_free(backend_, buffer);
  allocated_[kind] -= bytes;
}

Status Backend::Write(const BufferHandle& buffer, uint64_t offset, const void* src,
                      uint64_t bytes) {
  return FromPlugin(api_->buffer_write(backend_, buffer.get(), offset, src, bytes), "write");
}

Status Backend::Read(const BufferHandle& buffer, uint64_t offset, void* dst, uint64_t bytes) {
  return FromPlugin(api_->buffer_read(backend_, buffer.get(), offset, dst, bytes), "read");
}

Status Backend::Execute(const std::vector<zaya_op>& ops) {
  return FromPlugin(api_->execute(backend_, ops.data(), ops.size()), "execute");
}

Status Backend::PrepareWeight(const zaya_tensor& weight, const zaya_tensor& scales) {
  // Members after execute exist only in the tables of plugins built for ABI 1.1 on.
  if (api_->struct_size <
          offsetof(zaya_backend_api, weight_prepare) + sizeof(api_->weight_prepare) ||
      api_->weight_prepare == nullptr) {
    return Status::Ok();
  }
  return FromPlugin(api_->weight_prepare(backend_, &weight, &scales), "weight_prepare");
}

}  // namespace zaya
