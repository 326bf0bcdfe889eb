// libFuzzer target for the protocol codec: any bytes must decode to a request or an error with a
// code from the documented list, never crash, never recurse past the depth limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ipc/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zaya::ipc;
  const std::string_view frame(reinterpret_cast<const char*>(data), size);
  ProtocolLimits limits;
  limits.max_message = 64 * 1024;
  limits.max_json_depth = 16;
  limits.max_population = 8;
  Decoded d = DecodeRequest(frame, limits);
  if (d.ok()) {
    if (d.id.empty() || d.id.size() > kMaxIdBytes) std::abort();
    // Whatever was accepted must encode back into a valid reply frame.
    const std::string reply = EncodeEvent(d.id, zaya::EngineEvent::Type::kDone,
                                          {{"text", d.request.engine.prompt.value_or("")}});
    if (!DecodeEvent(reply).ok()) std::abort();
  } else {
    const std::string_view code = d.error_code;
    if (code != kBadRequest && code != kUnsupportedVersion && code != "invalid_argument" &&
        code != "internal") {
      std::abort();
    }
    if (code == "internal") std::abort();  // a validation path threw: a bug
    if (!DecodeEvent(EncodeError(d.id, code, d.error_message)).ok()) std::abort();
  }
  (void)DecodeEvent(frame);
  return 0;
}
