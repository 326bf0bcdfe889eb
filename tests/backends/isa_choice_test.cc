// The CPU plugin's choice of matvec tiles (kernels.h MatVecIsa): the best set the CPU can run,
// capped by ZAYA_CPU_ISA. If the detection lost a feature, the AVX-512 tiles would silently stop
// running (every other test would still pass through the AVX2 ones); ctest runs this test with
// no cap and with each cap (tests/backends/CMakeLists.txt).
#include <gtest/gtest.h>

#include <algorithm>
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
  return avx512 ? Isa::kAvx512 : Isa::kAvx2;
}

TEST(MatVecIsa, IsTheBestTheCpuHasUnderTheEnvironmentsCap) {
  Isa want = BestOfThisCpu();
  const char* env = std::getenv("ZAYA_CPU_ISA");
  const std::string cap = env != nullptr ? env : "";
  if (cap == "portable") want = Isa::kPortable;
  if (cap == "avx2") want = std::min(want, Isa::kAvx2);
  EXPECT_EQ(IsaName(MatVecIsa()), std::string(IsaName(want))) << "ZAYA_CPU_ISA=" << cap;
  EXPECT_STREQ(IsaEnvError(), "");
  if (want != Isa::kAvx512) {
    std::printf("note: this CPU or cap gives the %s tiles; the AVX-512 ones are not exercised\n",
                IsaName(want));
  }
}

}  // namespace
}  // namespace zaya::cpu
