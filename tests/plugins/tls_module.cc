// A shared library with one thread_local, for tls_exit_probe: dlopen'd, its per-thread block is
// allocated by glibc on first use, like the thread_locals of our backend plugins.
thread_local int slot;

extern "C" __attribute__((visibility("default"))) int* zaya_tls_slot() { return &slot; }
