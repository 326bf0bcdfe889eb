// Throughput of the CPU plugin's matvec tiles on their own: GB/s of weights and GMAC/s, for one
// weight dtype, batch (tokens) and working set, through zaya::cpu::MatMul and the plugin's thread
// pool. A working set far above the last-level cache measures the DRAM-bound decode case; one
// that fits in L2 measures the tiles' arithmetic. Used to pick the tile shapes and prefetch
// distance in backends/cpu/kernels_avx2.cc (docs/performance.md has the numbers).
//
//   cpu_kernel_bench [--dtype bf16|int8|f32] [--rows N] [--k K] [--tokens T] [--mib M]
//                    [--reps R] [--threads P] [--layout tiles|groups|rows]
//     --layout: int8 and bf16 weights rearranged as the backend prepares them (tiles, the default
//     where the AVX-512 tiles run and the shape allows: kernels.h), int8 in the 256-column group
//     layout that matrices outside the block layout keep (groups), or row-major as written;
//     --i8-layout is its old name
//   cpu_kernel_bench --fma-peak [--threads P]     the AVX2 FMA ceiling, GMAC/s
//   cpu_kernel_bench --amx-gemm [--threads P]     an AMX bf16 GEMM over the tile layout
//                                                 (amx_gemm.h; CPUs with AMX only)
//   cpu_kernel_bench --isa-loops                  the tiles' instructions, per cycle on one core
//   cpu_kernel_bench --attend [--kv bf16|int8] [--context N] [--sequences S]
//                    [--blocks consecutive|interleaved] [--reps R] [--threads P] [--prefill N]
//                                                 decode (or prefill) attention over a long cache
//                                                 (attend_bench.h)
// ZAYA_CPU_ISA=portable|avx2 measures the other tiles instead.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "amx_gemm.h"
#include "attend_bench.h"
#include "fma_peak.h"
#include "isa_loops.h"
#include "kernels.h"
#include "thread_pool.h"

namespace {

using zaya::cpu::WType;

int Usage() {
  std::fprintf(
      stderr,
      "usage: cpu_kernel_bench [--dtype bf16|int8|f32] [--rows N] [--k K] [--tokens T] "
      "[--mib M] [--reps R] [--threads P] [--layout tiles|groups|rows] | cpu_kernel_bench "
      "--fma-peak [--threads P] | cpu_kernel_bench --amx-gemm [--threads P] | cpu_kernel_bench "
      "--isa-loops | cpu_kernel_bench --attend [--kv "
      "bf16|int8] [--context N] [--sequences S] [--blocks consecutive|interleaved] "
      "[--reps R] [--threads P] [--prefill N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype = "bf16";
  std::string layout = "tiles";
  int64_t rows = 2048, k = 2048, tokens = 1, mib = 1024;
  int reps = 5, threads = 2;
  if (*zaya::cpu::IsaEnvError() != '\0') std::fprintf(stderr, "%s\n", zaya::cpu::IsaEnvError());
  if (argc == 2 && std::strcmp(argv[1], "--isa-loops") == 0) {
    zaya::bench::PrintIsaLoops();
    return 0;
  }
  if (argc >= 2 && std::strcmp(argv[1], "--attend") == 0) {
    const int rc = zaya::bench::RunAttendBench(argc - 2, argv + 2);
    return rc == 2 ? Usage() : rc;
  }
  if (argc >= 2 && std::strcmp(argv[1], "--amx-gemm") == 0) {
    if (argc == 4 && std::strcmp(argv[2], "--threads") == 0) threads = std::atoi(argv[3]);
    if ((argc != 2 && argc != 4) || threads < 1) return Usage();
    if (const std::string why = zaya::bench::AmxUnavailable(); !why.empty()) {
      std::fprintf(stderr, "cpu_kernel_bench: --amx-gemm: %s\n", why.c_str());
      return 77;  // CTest's skip code (tests/backends/CMakeLists.txt)
    }
    return zaya::bench::RunAmxGemm(threads) ? 0 : 1;
  }
  if (argc >= 2 && std::strcmp(argv[1], "--fma-peak") == 0) {
    if (argc == 4 && std::strcmp(argv[2], "--threads") == 0) threads = std::atoi(argv[3]);
    if ((argc != 2 && argc != 4) || threads < 1) return Usage();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
      std::fprintf(stderr, "cpu_kernel_bench: --fma-peak needs AVX2 and FMA\n");
      return 1;
    }
    std::printf("AVX2 FMA peak, %d threads: %.1f GMAC/s\n", threads,
                zaya::bench::FmaPeakGmacs(threads));
    return 0;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--dtype") dtype = v;
    else if (a == "--rows") rows = std::atoll(v);
    else if (a == "--k") k = std::atoll(v);
    else if (a == "--tokens") tokens = std::atoll(v);
    else if (a == "--mib") mib = std::atoll(v);
    else if (a == "--reps") reps = std::atoi(v);
    else if (a == "--threads") threads = std::atoi(v);
    else if (a == "--layout" || a == "--i8-layout")
      layout = v;
    else return Usage();
  }
  if (argc % 2 == 0 || rows < 1 || k < 1 || tokens < 1 || mib < 1 || reps < 1 || threads < 1 ||
      (dtype != "bf16" && dtype != "int8" && dtype != "f32") ||
      (layout != "tiles" && layout != "rows" && layout != "groups")) {
    return Usage();
  }
  const WType type = dtype == "bf16" ? WType::kBF16 : dtype == "int8" ? WType::kI8 : WType::kF32;
  const double esz = type == WType::kBF16 ? 2.0
                     : type == WType::kI8 ? 1.0 + 4.0 / zaya::cpu::kI8Group
                                          : 4.0;
  const int64_t matrix_bytes = static_cast<int64_t>(static_cast<double>(rows * k) * esz);
  const int64_t matrices = std::max<int64_t>(1, (mib << 20) / matrix_bytes);
  const size_t wsz = type == WType::kBF16 ? 2 : type == WType::kI8 ? 1 : 4;
  // 64-byte aligned like the backend's weight buffers: malloc's mmap'd blocks start 16 bytes
  // into a page, which split every AMX tile row across two cache lines (session 20: one token
  // 50 against 150 GB/s from L2).
  zaya::cpu::AlignedVector<uint8_t> w(static_cast<size_t>(matrices * rows * k) * wsz);
  std::mt19937 rng(7);
  for (auto& b : w) b = static_cast<uint8_t>(rng() & 0x3f);  // small finite bf16/f32 values
  const int64_t blocks = zaya_i8_scales(k);
  std::vector<float> scales(static_cast<size_t>(matrices * rows * blocks), 0.01f);
  const bool i8_blocks = type == WType::kI8 && layout == "tiles" && zaya::cpu::I8BlocksFit(rows, k);
  // The block layout holds each matrix's scales in its blocks (kernels.h PackI8Blocks).
  zaya::cpu::AlignedVector<uint8_t> blocks_w;
  if (i8_blocks) {
    blocks_w.resize(
        static_cast<size_t>(matrices * rows / zaya::cpu::kI8TileRows * zaya::cpu::I8BlockBytes(k)));
    zaya::cpu::PackI8Blocks(reinterpret_cast<const int8_t*>(w.data()), scales.data(),
                            matrices * rows, k, blocks_w.data());
    zaya::cpu::AlignedVector<uint8_t>().swap(w);
  }
  const bool i8_tiles = type == WType::kI8 && !i8_blocks &&
                        (layout == "tiles" || layout == "groups") && zaya::cpu::I8TilesLayoutUsed();
  if (i8_tiles) {
    zaya::cpu::PackI8Tiles(reinterpret_cast<int8_t*>(w.data()), matrices * rows, k);
  }
  const bool bf16_tiles =
      type == WType::kBF16 && layout == "tiles" && zaya::cpu::Bf16TilesFit(rows, k);
  if (bf16_tiles) {
    zaya::cpu::PackBf16Tiles(reinterpret_cast<uint16_t*>(w.data()), matrices * rows, k);
  }
  // x aligned like the backend's activation buffers.
  zaya::cpu::AlignedVector<float> x(static_cast<size_t>(tokens * k));
  std::vector<float> y(static_cast<size_t>(tokens * rows));
  for (auto& v : x) v = static_cast<float>(rng() % 200) / 100.f - 1.f;
  zaya::cpu::ThreadPool pool(threads);
  // Enough passes that a rep lasts ~0.2 s at ~30 GB/s even for an in-cache working set.
  const int64_t passes = std::max<int64_t>(1, (int64_t{6} << 30) / (matrices * matrix_bytes) / 4);
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t p = 0; p < passes; ++p) {
      for (int64_t m = 0; m < matrices; ++m) {
        zaya::cpu::Weights wt;
        wt.type = type;
        wt.data = i8_blocks ? blocks_w.data() + static_cast<size_t>(matrix_bytes * m)
                            : w.data() + static_cast<size_t>(m * rows * k) * wsz;
        wt.scales = i8_blocks ? nullptr : scales.data() + m * rows * blocks;
        wt.i8_tiles = i8_tiles;
        wt.i8_blocks = i8_blocks;
        wt.bf16_tiles = bf16_tiles;
        zaya::cpu::MatMul(pool, x.data(), tokens, k, wt, rows, nullptr, zaya::cpu::Act::kNone,
                          y.data());
      }
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(static_cast<double>(passes * matrices * matrix_bytes) / s);
  }
  std::sort(rates.begin(), rates.end());
  const double gbs = rates[rates.size() / 2] / 1e9;
  const double gmacs = gbs / esz * static_cast<double>(tokens);
  std::printf(
      "%s %s%s rows %lld k %lld tokens %lld working set %.1f MiB threads %d: %.2f GB/s, "
      "%.1f GMAC/s (median of %d)\n",
      zaya::cpu::IsaName(zaya::cpu::MatVecIsa()), dtype.c_str(),
      i8_blocks                ? " (block layout)"
      : i8_tiles || bf16_tiles ? " (tile layout)"
                               : "",
      static_cast<long long>(rows), static_cast<long long>(k), static_cast<long long>(tokens),
      static_cast<double>(matrices * matrix_bytes) / (1 << 20), threads, gbs, gmacs, reps);
  return 0;
}
