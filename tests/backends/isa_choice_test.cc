// The CPU plugin's choice of matvec tiles (kernels.h MatVecIsa): the best set the CPU can run,
// capped by ZAYA_CPU_ISA. If the detection lost a feature, the AVX-512 (or AMX) tiles would
// silently stop running (every other test would still pass through the AVX2 ones); ctest runs this
// test with no cap and with each cap (tests/backends/CMakeLists.txt).
#include <cpuid.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels.h"

namespace zaya::cpu {
namespace {

Isa BestOfThisCpu() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return Isa::kPortable;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni");
  if (!avx512) return Isa::kAvx2;
  // AMX-TILE, AMX-BF16 and AMX-INT8 by CPUID, and tile data among what the kernel can hand out
  // (ARCH_GET_XCOMP_SUPP, where the plugin asks with ARCH_REQ_XCOMP_PERM).
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool amx_cpu = __get_cpuid_count(7, 0, &a, &b, &c, &d) != 0 && (d & (1u << 24)) != 0 &&
                       (d & (1u << 22)) != 0 && (d & (1u << 25)) != 0;
  uint64_t supported = 0;
  const bool amx_os =
      syscall(SYS_arch_prctl, 0x1021, &supported) == 0 && (supported & (uint64_t{1} << 18)) != 0;
  return amx_cpu && amx_os ? Isa::kAmx : Isa::kAvx512;
}

TEST(MatVecIsa, IsTheBestTheCpuHasUnderTheEnvironmentsCap) {
  Isa want = BestOfThisCpu();
  const char* env = std::getenv("ZAYA_CPU_ISA");
  const std::string cap = env != nullptr ? env : "";
  if (cap == "portable") want = Isa::kPortable;
  if (cap == "avx2") want = std::min(want, Isa::kAvx2);
  if (cap == "avx512") want = std::min(want, Isa::kAvx512);
  EXPECT_EQ(IsaName(MatVecIsa()), std::string(IsaName(want))) << "ZAYA_CPU_ISA=" << cap;
  EXPECT_STREQ(IsaEnvError(), "");
  if (want < Isa::kAvx512) {
    std::printf("note: this CPU or cap gives the %s tiles; the AVX-512 ones are not exercised\n",
                IsaName(want));
  } else if (want == Isa::kAvx512 && cap.empty()) {
    std::printf("note: no AMX here (%s); the AMX path is not exercised\n", AmxNote());
  }
}

// The far prefetchnta of the AVX-512 tiles runs on AMD CPUs only (kernels.h FarNtaFetch): on
// the Intel Xeon of docs/performance.md's session 20 it cut several-token tiles to a third, and
// if the vendor check flipped, every batched decode there would lose that again unnoticed.
TEST(FarNtaFetch, OnlyOnAmdCpusAsProcCpuinfoNamesThem) {
  std::FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (f == nullptr) GTEST_SKIP() << "no /proc/cpuinfo";
  char line[512];
  std::string vendor;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    const std::string l = line;
    if (l.rfind("vendor_id", 0) == 0) {
      vendor = l.substr(l.find(':') + 2);
      while (!vendor.empty() && (vendor.back() == '\n' || vendor.back() == ' ')) vendor.pop_back();
      break;
    }
  }
  std::fclose(f);
  ASSERT_FALSE(vendor.empty()) << "no vendor_id line in /proc/cpuinfo";
  EXPECT_EQ(FarNtaFetch(), vendor == "AuthenticAMD") << "vendor_id " << vendor;
}

}  // namespace
}  // namespace zaya::cpu
