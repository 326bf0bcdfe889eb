#include "isa_loops.h"

#include <chrono>
#include <cstdio>

// Inline assembly, so that the compiler can neither merge nor reorder the copies; the assembler
// takes AVX-512 mnemonics whatever the -m flags, and the CPU is checked before they run.
namespace zaya::bench {
namespace {

constexpr long kIters = 100'000'000;

// Times 10^8 passes of `body`; `zero` clears its two source registers first.
#define ZAYA_TIMED_LOOP(zero, body)                                                              \
  [] {                                                                                           \
    long n = kIters;                                                                             \
    const auto t0 = std::chrono::steady_clock::now();                                            \
    __asm__ volatile(zero "1:\n" body "dec %0\n jnz 1b\n"                                       \
                     : "+r"(n)                                                                   \
                     :                                                                           \
                     : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13");                      \
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();         \
  }
#define ZAYA_LOOP(body) \
  ZAYA_TIMED_LOOP("vpxord %%zmm12, %%zmm12, %%zmm12\n vpxord %%zmm13, %%zmm13, %%zmm13\n", body)
#define ZAYA_LOOP_AVX2(body) \
  ZAYA_TIMED_LOOP("vpxor %%ymm12, %%ymm12, %%ymm12\n vpxor %%ymm13, %%ymm13, %%ymm13\n", body)

// One instruction on 12 independent destinations, sources 12 and 13.
#define ZAYA_X12(op, r)                                                                          \
  op " %%" r "12, %%" r "13, %%" r "0\n" op " %%" r "12, %%" r "13, %%" r "1\n" op " %%" r      \
     "12, %%" r "13, %%" r "2\n" op " %%" r "12, %%" r "13, %%" r "3\n" op " %%" r "12, %%" r   \
     "13, %%" r "4\n" op " %%" r "12, %%" r "13, %%" r "5\n" op " %%" r "12, %%" r "13, %%" r   \
     "6\n" op " %%" r "12, %%" r "13, %%" r "7\n" op " %%" r "12, %%" r "13, %%" r "8\n" op     \
     " %%" r "12, %%" r "13, %%" r "9\n" op " %%" r "12, %%" r "13, %%" r "10\n" op " %%" r     \
     "12, %%" r "13, %%" r "11\n"

// The AVX-512 int8 tile's work per 256 columns, row and token: two chains of two vpdpbusd, an add,
// a conversion, the product of the two scale vectors and an FMA. A, B scratch, C the accumulator.
#define ZAYA_I8_GROUP(a, b, c)                                                                   \
  "vpdpbusd %%zmm12, %%zmm13, %%zmm" a "\n vpdpbusd %%zmm12, %%zmm13, %%zmm" a                   \
  "\n vpdpbusd %%zmm12, %%zmm13, %%zmm" b "\n vpdpbusd %%zmm12, %%zmm13, %%zmm" b                \
  "\n vpaddd %%zmm" a ", %%zmm" b ", %%zmm" a "\n vcvtdq2ps %%zmm" a ", %%zmm" a                 \
  "\n vmulps %%zmm12, %%zmm13, %%zmm" b "\n vfmadd231ps %%zmm" b ", %%zmm" a ", %%zmm" c "\n"
// The AVX2 int8 tile's work per 32 columns, row and token.
#define ZAYA_I8_BLOCK(a, b, c)                                                                   \
  "vpmaddwd %%ymm12, %%ymm13, %%ymm" a "\n vpmaddwd %%ymm12, %%ymm13, %%ymm" b                   \
  "\n vpaddd %%ymm" a ", %%ymm" b ", %%ymm" a "\n vcvtdq2ps %%ymm" a ", %%ymm" a                  \
  "\n vfmadd231ps %%ymm13, %%ymm" a ", %%ymm" c "\n"

void Report(const char* what, double seconds, int per_iter, double ghz, const char* unit) {
  const double per_ns = static_cast<double>(kIters) * per_iter / seconds / 1e9;
  std::printf("  %-46s %6.2f per ns  %5.2f per cycle at %.2f GHz  (%s)\n", what, per_ns,
              per_ns / ghz, ghz, unit);
}

// Cycles per ns: 12 dependent one-cycle adds per iteration (the loop counter runs beside them).
// Each adds the register to itself: Intel cores since Golden Cove fold chains of `add $1, reg`
// at rename, several a cycle, and the immediate form measured "21.85 GHz" on a 2.6 GHz Xeon.
double ClockGhz() {
  long n = kIters, x = 1;
  const auto t0 = std::chrono::steady_clock::now();
  __asm__ volatile(
      "1:\n add %1, %1\n add %1, %1\n add %1, %1\n add %1, %1\n add %1, %1\n add %1, %1\n"
      " add %1, %1\n add %1, %1\n add %1, %1\n add %1, %1\n add %1, %1\n add %1, %1\n"
      " dec %0\n jnz 1b\n"
      : "+r"(n), "+r"(x));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(kIters) * 12 / s / 1e9;
}

}  // namespace

void PrintIsaLoops() {
  __builtin_cpu_init();
  const double ghz = ClockGhz();
  std::printf("one core at ~%.2f GHz, 12 independent copies per loop iteration:\n", ghz);
  Report("vfmadd231ps ymm", ZAYA_LOOP_AVX2(ZAYA_X12("vfmadd231ps", "ymm"))(), 12, ghz, "8 MACs");
  Report("vpmaddwd ymm", ZAYA_LOOP_AVX2(ZAYA_X12("vpmaddwd", "ymm"))(), 12, ghz, "16 products");
  Report("AVX2 int8 block: 2 vpmaddwd+add+cvt+fma",
         ZAYA_LOOP_AVX2(ZAYA_I8_BLOCK("0", "1", "8") ZAYA_I8_BLOCK("2", "3", "9")
                            ZAYA_I8_BLOCK("4", "5", "10") ZAYA_I8_BLOCK("6", "7", "11"))(),
         4, ghz, "32 MACs");
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512vnni")) {
    std::printf("  (no AVX-512 BF16 + VNNI on this CPU: its loops are skipped)\n");
    return;
  }
  Report("vfmadd231ps zmm", ZAYA_LOOP(ZAYA_X12("vfmadd231ps", "zmm"))(), 12, ghz, "16 MACs");
  Report("vdpbf16ps zmm", ZAYA_LOOP(ZAYA_X12("vdpbf16ps", "zmm"))(), 12, ghz, "32 MACs");
  Report("vpdpwssd zmm", ZAYA_LOOP(ZAYA_X12("vpdpwssd", "zmm"))(), 12, ghz, "32 products");
  Report("vpdpbusd zmm", ZAYA_LOOP(ZAYA_X12("vpdpbusd", "zmm"))(), 12, ghz, "64 products");
  Report("vpmaddwd zmm", ZAYA_LOOP(ZAYA_X12("vpmaddwd", "zmm"))(), 12, ghz, "32 products");
  Report("vpaddd zmm", ZAYA_LOOP(ZAYA_X12("vpaddd", "zmm"))(), 12, ghz, "16 adds");
  Report("AVX-512 int8 group: 4 vpdpbusd+add+cvt+mul+fma",
         ZAYA_LOOP(ZAYA_I8_GROUP("0", "1", "8") ZAYA_I8_GROUP("2", "3", "9")
                       ZAYA_I8_GROUP("4", "5", "10") ZAYA_I8_GROUP("6", "7", "11"))(),
         4, ghz, "256 MACs");
}

}  // namespace zaya::bench
