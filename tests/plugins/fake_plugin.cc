// A deliberately broken backend plugin, compiled once per defect (see CMakeLists.txt), to prove the
// loader refuses each with a clear message instead of crashing.
#include "zaya/backend.h"

namespace {

#ifdef FAKE_CREATE_OK
int instance;
zaya_status Create(const zaya_backend_options*, zaya_backend** out) {
  *out = reinterpret_cast<zaya_backend*>(&instance);
  return ZAYA_STATUS_OK;
}
#else
zaya_status Create(const zaya_backend_options*, zaya_backend** out) {
  *out = nullptr;
  return ZAYA_STATUS_DEVICE_ERROR;
}
#endif
void Destroy(zaya_backend*) {}
const char* LastError(zaya_backend*) { return "fake"; }
#ifdef FAKE_DEVICE_INFO_OK
// A CPU device with bf16 and int8 weights but without ZAYA_CAP_I8_KV.
zaya_status DeviceInfo(zaya_backend*, zaya_device_info* out) {
  *out = {};
  out->struct_size = sizeof(*out);
  out->kind = ZAYA_DEVICE_CPU;
  out->caps = ZAYA_CAP_BF16_WEIGHTS | ZAYA_CAP_I8_WEIGHTS;
  return ZAYA_STATUS_OK;
}
#else
zaya_status DeviceInfo(zaya_backend*, zaya_device_info*) { return ZAYA_STATUS_UNSUPPORTED; }
#endif
zaya_status Alloc(zaya_backend*, zaya_buffer_kind, uint64_t, zaya_buffer**) {
  return ZAYA_STATUS_OUT_OF_MEMORY;
}
void Free(zaya_backend*, zaya_buffer*) {}
zaya_status Write(zaya_backend*, zaya_buffer*, uint64_t, const void*, uint64_t) {
  return ZAYA_STATUS_UNSUPPORTED;
}
zaya_status Read(zaya_backend*, zaya_buffer*, uint64_t, void*, uint64_t) {
  return ZAYA_STATUS_UNSUPPORTED;
}
zaya_status Execute(zaya_backend*, const zaya_op*, uint64_t) { return ZAYA_STATUS_UNSUPPORTED; }
// Fails, so that a test sees whether the host called it (an ABI 1.0 table ends before it).
zaya_status Prepare(zaya_backend*, const zaya_tensor*, const zaya_tensor*) {
  return ZAYA_STATUS_UNSUPPORTED;
}

#ifndef FAKE_MAJOR
#define FAKE_MAJOR ZAYA_BACKEND_ABI_MAJOR
#endif
#ifndef FAKE_SIZE
#define FAKE_SIZE sizeof(zaya_backend_api)
#endif

zaya_backend_api api = {FAKE_MAJOR,
                        0,
                        FAKE_SIZE,
#ifdef FAKE_NULL_NAME
                        nullptr,
#else
                        "fake",
#endif
                        "0",
                        &Create,
                        &Destroy,
                        &LastError,
                        &DeviceInfo,
                        &Alloc,
                        &Free,
                        &Write,
                        &Read,
#ifdef FAKE_NULL_EXECUTE
                        nullptr
#else
                        &Execute
#endif
                        ,
                        &Prepare};

}  // namespace

#ifndef FAKE_NO_ENTRY
extern "C" __attribute__((visibility("default"))) const zaya_backend_api* zaya_backend_entry_v1() {
  return &api;
}
#endif

#ifdef FAKE_SCORE_ZERO
extern "C" __attribute__((visibility("default"))) int zaya_backend_score(const char** reason) {
  *reason = "no device found (fake)";
  return 0;
}
#endif
