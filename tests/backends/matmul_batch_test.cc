// The CPU kernels' batch invariance beyond the conformance suite's 63 tokens: where MatMul runs
// the tiles at every batch (kernels.h TilesAtEveryBatch: bf16 and int8 weights on the AVX-512
// tiles), a row's output is bitwise the same at 1, 70 and 130 tokens, through the row-major and
// the tile layouts. The engine mixes decode tokens with prompt chunks in one step, so without
// this a seeded request's tokens would change when another client's long prompt shares its step.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

namespace zaya::cpu {
namespace {

TEST(MatMul, RowsDoNotDependOnTheBatchAtAnyTokenCountWhereTheTilesRunIt) {
  const int64_t n = 48, k = 288;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(130 * k));
  for (float& v : x) v = normal(rng);
  std::vector<uint16_t> bf16(static_cast<size_t>(n * k));
  for (uint16_t& v : bf16) {
    const float f = normal(rng);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    v = static_cast<uint16_t>(bits >> 16);
  }
  std::vector<int8_t> i8(static_cast<size_t>(n * k));
  for (int8_t& v : i8) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  std::vector<float> scales(static_cast<size_t>(n * ((k + 31) / 32)), 0.01f);
  std::vector<uint16_t> packed = bf16;
  const bool layout = Bf16TilesLayoutUsed();
  if (layout) PackBf16Tiles(packed.data(), n, k);

  Weights cases[3];
  cases[0].type = WType::kBF16;
  cases[0].data = bf16.data();
  cases[1] = cases[0];
  cases[1].data = packed.data();
  cases[1].bf16_tiles = layout;
  cases[2].type = WType::kI8;
  cases[2].data = i8.data();
  cases[2].scales = scales.data();
  ThreadPool pool(2);
  int checked = 0;
  for (const Weights& w : cases) {
    if (!TilesAtEveryBatch(w)) continue;
    ++checked;
    std::vector<float> y[3];
    const int64_t ts[3] = {1, 70, 130};
    for (int i = 0; i < 3; ++i) {
      y[i].resize(static_cast<size_t>(ts[i] * n));
      MatMul(pool, x.data(), ts[i], k, w, n, nullptr, Act::kNone, y[i].data());
    }
    const auto what = [&] { return "dtype " + std::to_string(static_cast<int>(w.type)) +
                                   (w.bf16_tiles ? " (tile layout)" : ""); };
    EXPECT_EQ(std::memcmp(y[0].data(), y[1].data(), n * 4), 0) << what() << ": token 0 at 1 / 70";
    EXPECT_EQ(std::memcmp(y[0].data(), y[2].data(), n * 4), 0) << what() << ": token 0 at 1 / 130";
    EXPECT_EQ(std::memcmp(y[1].data() + 69 * n, y[2].data() + 69 * n, n * 4), 0)
        << what() << ": token 69 at 70 / 130";
  }
  if (checked == 0) {
    GTEST_SKIP() << "the " << IsaName(MatVecIsa())
                 << " tiles leave 64 tokens and more to OpenBLAS (batch-invariant below 64 only)";
  }
}

}  // namespace
}  // namespace zaya::cpu
