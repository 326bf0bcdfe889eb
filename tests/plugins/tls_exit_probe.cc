// Regression probe for a LeakSanitizer crash at exit ("Tracer caught signal 11") that depended on
// heap layout: see cmake/sanitizer_defaults.cc. Usage: tls_exit_probe MODULE.so THREADS
//
// Loads MODULE with dlopen, has THREADS threads touch its thread_local, and exits while they are
// still alive, so that LeakSanitizer scans their thread-local blocks. It counts the blocks that
// sit 16 bytes into a page (where GCC 12's runtime misreads the bounds): with none, the run
// proves nothing, so it fails. The CTest entry fails on a non-zero exit or LeakSanitizer's fatal
// error; in a sanitizer build without the project's defaults it dies that way.
#include <dlfcn.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODULE.so THREADS\n", argv[0]);
    return 2;
  }
  void* module = dlopen(argv[1], RTLD_NOW);
  if (module == nullptr) {
    std::fprintf(stderr, "tls_exit_probe: %s\n", dlerror());
    return 2;
  }
  auto* slot = reinterpret_cast<int* (*)()>(dlsym(module, "zaya_tls_slot"));
  if (slot == nullptr) {
    std::fprintf(stderr, "tls_exit_probe: %s has no zaya_tls_slot\n", argv[1]);
    return 2;
  }
  const int threads = std::atoi(argv[2]);
  std::mutex mu;
  std::condition_variable cv;
  int touched = 0, at_page_offset_16 = 0;
  for (int i = 0; i < threads; ++i) {
    // Detached and parked forever: exit() must find them alive.
    std::thread([&] {
      const auto block = reinterpret_cast<uintptr_t>(slot());
      std::unique_lock lock(mu);
      if (block % 4096 == 16) ++at_page_offset_16;
      ++touched;
      cv.notify_all();
      cv.wait(lock, [] { return false; });
    }).detach();
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return touched == threads; });
  std::printf("tls_exit_probe: %d of %d thread-local blocks 16 bytes into a page\n",
              at_page_offset_16, threads);
  if (at_page_offset_16 == 0) {
    std::fprintf(stderr,
                 "tls_exit_probe: no block where the runtime misreads it; this run "
                 "proves nothing (raise THREADS)\n");
    return 1;
  }
  std::fflush(stdout);
  std::exit(0);  // LeakSanitizer's check runs here, with every thread parked
}
