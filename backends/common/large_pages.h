// Memory for large buffers that are streamed from DRAM (weights, KV blocks, the bench's read
// buffer): from 2 MiB on, an anonymous mapping aligned to 2 MiB and advised MADV_HUGEPAGE, so
// that where the kernel's transparent huge pages are "always" or "madvise" (Debian's default) it
// is backed by 2 MiB pages. Smaller buffers come from operator new, 64-byte aligned.
//
// Why: with 4 KiB pages a stream crosses a page every 64 lines, and the hardware prefetchers stop
// at each crossing. Session 23's Xeon (2 threads, 1 GiB, the read test's patterns) read one stream
// a thread at 27.0-28.8 GB/s on 4 KiB pages and 32.8-37.5 on huge pages, and its best pattern at
// 32.6 against 37.5 (docs/performance.md). glibc's malloc never asks for huge pages, and
// THP's "madvise" mode gives them to nothing else.
//
// Header-only because the plugins share only header-only code with zayad (backends/cpu/
// CMakeLists.txt); the bench's read test uses it too, so that the roofline it measures
// is read from memory like the weights are.
//
// Thread safety: none needed; each call is independent.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

namespace zaya::backend_common {

inline constexpr size_t kLargePageBytes = size_t{2} << 20;

// Bytes actually reserved for a buffer of `bytes`: what AllocateStreamed maps and
// FreeStreamed unmaps.
inline size_t StreamedBytes(size_t bytes) {
  if (bytes < kLargePageBytes) return (bytes + 63) / 64 * 64;
  return (bytes + 4095) / 4096 * 4096;
}

// A zero-filled buffer of `bytes` (>= 1), 64-byte aligned, and from kLargePageBytes on 2 MiB
// aligned and advised for huge pages (its last partial 2 MiB stays on small pages, so the memory
// it holds is `bytes` rounded to 4 KiB, not to 2 MiB). Returns nullptr when the memory is not
// there; the caller owns it and hands it back to FreeStreamed with the same `bytes`.
inline void* AllocateStreamed(size_t bytes) {
  // No object is larger than PTRDIFF_MAX, and this keeps the roundings below from wrapping past
  // 2^64 to a small mapping that claims `bytes`.
  if (bytes > static_cast<size_t>(PTRDIFF_MAX)) return nullptr;
  const size_t len = StreamedBytes(bytes);
  if (bytes < kLargePageBytes) {
    void* p = ::operator new (len, std::align_val_t{64}, std::nothrow);
    return p != nullptr ? std::memset(p, 0, len) : nullptr;
  }
  // Map 2 MiB more than needed, then give back the head and tail around the aligned middle.
  void* map = ::mmap(nullptr, len + kLargePageBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(map);
  const uintptr_t aligned = (start + kLargePageBytes - 1) & ~(uintptr_t{kLargePageBytes} - 1);
  if (aligned > start) ::munmap(map, aligned - start);
  const uintptr_t end = start + len + kLargePageBytes;
  if (end > aligned + len) ::munmap(reinterpret_cast<void*>(aligned + len), end - aligned - len);
  // Only advice: a kernel without transparent huge pages answers EINVAL, and the buffer works
  // the same on small pages.
  ::madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

inline void FreeStreamed(void* p, size_t bytes) {
  if (p == nullptr) return;
  const size_t len = StreamedBytes(bytes);
  if (bytes < kLargePageBytes) return ::operator delete (p, len, std::align_val_t{64});
  ::munmap(p, len);
}

// Why buffers cannot get huge pages on this machine, and what to do, from the content of
// /sys/kernel/mm/transparent_hugepage/enabled (`modes`, e.g. "always [madvise] never"; null
// where the file cannot be read, a kernel without transparent huge pages): "" where the advice
// above gets them (the mode in brackets is "always" or "madvise"). For the backend's start-up log:
// an operator who sees decode slower than the machine's bandwidth promises should find the reason.
inline std::string HugePagesUnavailable(const char* modes) {
  if (modes == nullptr) {
    return "this kernel has no transparent huge pages, so weights stream from 4 KiB pages "
           "(reads up to ~15% slower)";
  }
  const std::string m(modes);
  const size_t open = m.find('['), close = m.find(']', open == std::string::npos ? 0 : open);
  const std::string mode = open != std::string::npos && close != std::string::npos
                               ? m.substr(open + 1, close - open - 1)
                               : "";
  if (mode == "always" || mode == "madvise") return "";
  return "transparent huge pages are '" + (mode.empty() ? m : mode) +
         "' here, so weights stream from 4 KiB pages (reads up to ~15% slower); as root, echo "
         "madvise > /sys/kernel/mm/transparent_hugepage/enabled";
}

// A std allocator over AllocateStreamed, for vectors the CPU backend and the benches keep.
template <class T>
struct StreamedAllocator {
  using value_type = T;
  StreamedAllocator() = default;
  template <class U>
  StreamedAllocator(const StreamedAllocator<U>&) {}  // NOLINT: allocators convert implicitly
  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    void* p = AllocateStreamed(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) { FreeStreamed(p, n * sizeof(T)); }
  bool operator==(const StreamedAllocator&) const { return true; }
};

}  // namespace zaya::backend_common
