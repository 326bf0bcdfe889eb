// Default AddressSanitizer options for every executable of a ZAYA_SANITIZE build (linked in by
// the top-level CMakeLists.txt). ASAN_OPTIONS from the environment is parsed after these and wins.
//
// intercept_tls_get_addr=0: GCC 12's runtime (Debian 12) guesses where a dlopen'd library's
// thread-local block starts. When glibc's malloc'd block sits 16 bytes into a page, it takes the
// 16 bytes before it for a glibc 2.19 header and records garbage bounds; LeakSanitizer then scans
// them at exit and dies ("Tracer caught signal 11"). Our plugins are dlopen'd and have
// thread_locals, so whether a test passed depended on heap layout: the length of its path on disk
// was enough to flip it. Without the interception the blocks are still scanned, as heap chunks
// reachable from glibc's DTV. tests/plugins/tls_exit_probe.cc reproduces the crash.
extern "C" __attribute__((no_sanitize_address, visibility("default"))) const char*
__asan_default_options() {
  return "intercept_tls_get_addr=0";
}
