// libFuzzer target: the safetensors header parser and file validation. Each input is a whole
// file; it is parsed from memory and then opened through the mmap path, and every tensor byte is
// read so that the sanitizers catch any view that points outside the mapping.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "engine/weights/safetensors.h"

namespace {

int MemFd() {
  static const int fd = ::memfd_create("safetensors-fuzz", 0);
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 8) {
    uint64_t n = 0;
    std::memcpy(&n, data, 8);
    if (n <= size - 8) {
      auto header = zaya::ParseSafetensorsHeader(
          std::string_view(reinterpret_cast<const char*>(data) + 8, n), size - 8 - n, "fuzz");
      (void)header;
    }
  }
  const int fd = MemFd();
  if (fd < 0 || ::ftruncate(fd, 0) != 0) return 0;
  if (size > 0 && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  auto file = zaya::SafetensorsFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (file.ok()) {
    volatile unsigned sum = 0;
    for (const zaya::TensorView& t : (*file)->tensors()) {
      for (size_t i = 0; i < t.nbytes; ++i) sum = sum + static_cast<unsigned>(t.data[i]);
    }
  }
  return 0;
}
