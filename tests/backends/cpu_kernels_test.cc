// Properties of the CPU plugin's kernel library that the ABI-level conformance suite cannot see.
//
// Batch invariance beyond the conformance suite's 63 tokens: where MatMul runs
// the tiles at every batch (kernels.h TilesAtEveryBatch: bf16 and int8 weights on the AVX-512
// tiles), a row's output is bitwise the same at 1, 70 and 130 tokens, through the row-major and
// the tile and block layouts. The engine mixes decode tokens with prompt chunks in one step, so
// without this a seeded request's tokens would change when another client's long prompt shares its
// step.
//
// Attention's chunks (attention.h): a token's output is bitwise the same whatever the thread count
// and however many other tokens (and their chunks) share the call, including a prompt long enough
// to take several waves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention.h"
#include "kernels.h"
#include "thread_pool.h"

namespace zaya::cpu {
namespace {

// Returns how many of the four weight cases ran through the tiles at every batch.
int CheckRowsDoNotDependOnTheBatch(int64_t k) {
  const int64_t n = 48;
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
  std::vector<float> scales(static_cast<size_t>(n * zaya_i8_scales(k)), 0.01f);
  std::vector<uint16_t> packed = bf16;
  const bool layout = Bf16TilesLayoutUsed();
  if (layout) PackBf16Tiles(packed.data(), n, k);

  // The block layout's rows with other scales than the row-major case's, so that a scale read
  // from the wrong row or block shows.
  std::vector<float> scales_varied(scales.size());
  for (float& v : scales_varied) v = 0.005f + 0.01f * static_cast<float>(rng() % 100) / 100.f;
  const bool i8_layout = I8BlocksFit(n, k);
  std::vector<uint8_t> i8_packed(i8_layout ? static_cast<size_t>(n / kI8TileRows * I8BlockBytes(k))
                                           : i8.size());
  if (i8_layout) {
    PackI8Blocks(i8.data(), scales_varied.data(), n, k, i8_packed.data());
  } else {
    std::memcpy(i8_packed.data(), i8.data(), i8.size());
  }

  Weights cases[4];
  cases[0].type = WType::kBF16;
  cases[0].data = bf16.data();
  cases[1] = cases[0];
  cases[1].data = packed.data();
  cases[1].bf16_tiles = layout;
  cases[2].type = WType::kI8;
  cases[2].data = i8.data();
  cases[2].scales = scales.data();
  cases[3] = cases[2];
  cases[3].data = i8_packed.data();
  cases[3].scales = i8_layout ? nullptr : scales_varied.data();
  cases[3].i8_blocks = i8_layout;
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
    const auto what = [&] {
      return "dtype " + std::to_string(static_cast<int>(w.type)) +
             (w.bf16_tiles ? " (tile layout)" : "") + (w.i8_blocks ? " (block layout)" : "");
    };
    EXPECT_EQ(std::memcmp(y[0].data(), y[1].data(), n * 4), 0) << what() << ": token 0 at 1 / 70";
    EXPECT_EQ(std::memcmp(y[0].data(), y[2].data(), n * 4), 0) << what() << ": token 0 at 1 / 130";
    EXPECT_EQ(std::memcmp(y[1].data() + 69 * n, y[2].data() + 69 * n, n * 4), 0)
        << what() << ": token 69 at 70 / 130";
  }
  return checked;
}

// K = 288: the int8 row-major tiles (a 256-column group, then a 32-column block with a scale
// group's part); K = 384: the int8 block layout (three scale groups) where the AVX-512 tiles run,
// through AMX at 70 and 130 tokens where the CPU has it (kernels.cc kAmxI8MinTokens), against
// the VNNI tile at 1 token.
TEST(MatMul, RowsDoNotDependOnTheBatchAtAnyTokenCountWhereTheTilesRunIt) {
  if (MatVecIsa() >= Isa::kAvx512) {
    ASSERT_FALSE(I8BlocksFit(48, 288));
    ASSERT_TRUE(I8BlocksFit(48, 384));
  }
  int checked = 0;
  for (int64_t k : {288, 384}) {
    SCOPED_TRACE("K " + std::to_string(k));
    checked += CheckRowsDoNotDependOnTheBatch(k);
  }
  if (checked == 0) {
    GTEST_SKIP() << "the " << IsaName(MatVecIsa())
                 << " tiles leave 64 tokens and more to OpenBLAS (batch-invariant below 64 only)";
  }
}

// The int8 block layout at 9-64 tokens, where AMX runs it (kernels_amx.cc: three blocks per pass
// while the token count is at most 64, then the blocks past the last three one by one): every
// token's row is bitwise what the token gets alone (the VNNI tile at one token), for 7 blocks
// (three, three and one on one thread; split otherwise on two) and token counts that end in a
// part tile of 16. Without AMX the AVX-512 tile runs every count, and the same must hold.
TEST(MatMul, Int8BlocksAtNineToSixtyFourTokensGiveEachTokenItsRowAlone) {
  const int64_t n = 7 * kI8TileRows, k = 384;
  if (MatVecIsa() < Isa::kAvx512 || !I8BlocksFit(n, k)) {
    GTEST_SKIP() << "the int8 block layout runs only on the AVX-512 tiles";
  }
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  std::vector<int8_t> i8(static_cast<size_t>(n * k));
  for (int8_t& v : i8) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  std::vector<float> scales(static_cast<size_t>(n * zaya_i8_scales(k)));
  for (float& v : scales) v = 0.005f + 0.01f * static_cast<float>(rng() % 100) / 100.f;
  std::vector<uint8_t> packed(static_cast<size_t>(n / kI8TileRows * I8BlockBytes(k)));
  PackI8Blocks(i8.data(), scales.data(), n, k, packed.data());
  Weights w;
  w.type = WType::kI8;
  w.data = packed.data();
  w.i8_blocks = true;
  std::vector<float> bias(static_cast<size_t>(n));
  for (float& v : bias) v = normal(rng);
  const int64_t most = 64;
  std::vector<float> x(static_cast<size_t>(most * k));
  for (float& v : x) v = normal(rng);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    std::vector<float> alone(static_cast<size_t>(most * n));
    for (int64_t i = 0; i < most; ++i) {
      MatMul(pool, x.data() + i * k, 1, k, w, n, bias.data(), Act::kNone, alone.data() + i * n);
    }
    for (int64_t t : {9, 16, 20, 37, 64}) {
      std::vector<float> y(static_cast<size_t>(t * n));
      MatMul(pool, x.data(), t, k, w, n, bias.data(), Act::kNone, y.data());
      for (int64_t i = 0; i < t; ++i) {
        ASSERT_EQ(std::memcmp(y.data() + i * n, alone.data() + i * n, n * 4), 0)
            << threads << " threads, " << t << " tokens: token " << i << " differs from alone";
      }
    }
  }
}

// bf16 values of a normal distribution (f32 draws, truncated), for KV caches.
std::vector<uint16_t> NormalBf16(size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<uint16_t> out(count);
  for (uint16_t& v : out) {
    const float f = normal(rng);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    v = static_cast<uint16_t>(bits >> 16);
  }
  return out;
}

// One step's attention inputs; Run attends tokens [first, first + n) of it on `threads` threads.
struct AttendStep {
  int64_t nh, hd, max_blocks;
  KvCacheView kv;
  const std::vector<int32_t>& table;
  const std::vector<float>& q;
  const std::vector<int32_t>& seq;
  const std::vector<int32_t>& pos;

  std::vector<float> Run(int threads, int64_t first, int64_t n) const {
    ThreadPool pool(threads);
    AttendScratch scratch;
    std::vector<float> out(static_cast<size_t>(n * nh * hd));
    Attend(pool, q.data() + first * nh * hd, n, nh, kv, table.data(), max_blocks,
           seq.data() + first, pos.data() + first, 0.088f, out.data(), &scratch);
    return out;
  }
};

// bf16 and int8 caches (the int8 rows' scales applied after the kernels' products).
TEST(Attend, OutputsDoNotDependOnThreadsOrOnTheOtherTokens) {
  const int64_t nh = 8, nkv = 2, hd = 128, bt = 16, row = nkv * hd;
  // One sequence: a 1,100-token prompt chunk at positions 0 .. 1099 (~2,900 chunks, three
  // waves), whose last token is also decoded alone.
  const int64_t t = 1100, max_blocks = (t + bt - 1) / bt, blocks = max_blocks;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> byte(-127, 127);
  const std::vector<uint16_t> kc = NormalBf16(static_cast<size_t>(blocks * bt * row), rng);
  const std::vector<uint16_t> vc = NormalBf16(kc.size(), rng);
  std::vector<int8_t> kq(kc.size()), vq(kc.size());
  for (auto* c : {&kq, &vq}) {
    for (int8_t& v : *c) v = static_cast<int8_t>(byte(rng));
  }
  std::vector<float> ks(static_cast<size_t>(blocks * bt * nkv)), vs(ks.size());
  for (auto* c : {&ks, &vs}) {
    for (float& v : *c) v = std::fabs(normal(rng)) / 64.f;
  }
  std::vector<int32_t> table(static_cast<size_t>(max_blocks));
  std::iota(table.rbegin(), table.rend(), 0);  // blocks in reverse order
  std::vector<float> q(static_cast<size_t>(t * nh * hd));
  for (float& v : q) v = normal(rng);
  std::vector<int32_t> seq(static_cast<size_t>(t), 0), pos(static_cast<size_t>(t));
  std::iota(pos.begin(), pos.end(), 0);
  for (const KvCacheView& kv :
       {KvCacheView{kc.data(), vc.data(), KvType::kBf16, nullptr, nullptr, blocks, bt, nkv, hd},
        KvCacheView{kq.data(), vq.data(), KvType::kI8, ks.data(), vs.data(), blocks, bt, nkv,
                    hd}}) {
    const std::string what = kv.type == KvType::kI8 ? "int8 cache" : "bf16 cache";
    const AttendStep step{nh, hd, max_blocks, kv, table, q, seq, pos};
    auto attend = [&](int threads, int64_t first, int64_t n) {
      return step.Run(threads, first, n);
    };
    const std::vector<float> all = attend(2, 0, t);
    for (int threads : {1, 3}) {
      EXPECT_EQ(attend(threads, 0, t), all) << what << ", " << threads << " threads";
    }
    for (int64_t i : {int64_t{0}, int64_t{255}, int64_t{256}, t - 1}) {
      const std::vector<float> alone = attend(2, i, 1);
      EXPECT_EQ(0, std::memcmp(alone.data(), all.data() + i * nh * hd, alone.size() * 4))
          << what << ", token at position " << i;
    }
  }
}

// A step mixing two sequences' prompt tokens, interleaved, and a decode token: the op
// runs them grouped by sequence and chunk (4 tokens over the same chunk at a time), and each token
// must still get exactly what it gets alone, at any thread count.
TEST(Attend, InterleavedPromptsOfTwoSequencesGiveEachTokenWhatItGetsAlone) {
  const int64_t nh = 8, nkv = 2, hd = 128, bt = 16, row = nkv * hd;
  const int64_t max_blocks = 1024 / bt, blocks = 2 * max_blocks;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  const std::vector<uint16_t> kc = NormalBf16(static_cast<size_t>(blocks * bt * row), rng);
  const std::vector<uint16_t> vc = NormalBf16(kc.size(), rng);
  // Sequence 0 has blocks 0..63, sequence 1 blocks 127..64.
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  std::iota(table.begin(), table.begin() + max_blocks, 0);
  std::iota(table.rbegin(), table.rbegin() + max_blocks, static_cast<int32_t>(max_blocks));
  // Sequence 0's prompt ends at position 255, so its last unit covers [0, 256) exactly as
  // sequence 1's first units do: the two must not share a tile (they read other blocks).
  std::vector<int32_t> seq, pos;
  for (int32_t j = 0; j < 45; ++j) {
    seq.push_back(1);
    pos.push_back(270 + j);
    if (j < 26) {
      seq.push_back(0);
      pos.push_back(230 + j);
    }
  }
  seq.push_back(1);  // a decode token
  pos.push_back(700);
  const int64_t t = static_cast<int64_t>(seq.size());
  std::vector<float> q(static_cast<size_t>(t * nh * hd));
  for (float& v : q) v = normal(rng);
  const KvCacheView kv{kc.data(), vc.data(), KvType::kBf16, nullptr, nullptr, blocks, bt, nkv, hd};
  const AttendStep step{nh, hd, max_blocks, kv, table, q, seq, pos};
  auto attend = [&](int threads, int64_t first, int64_t n) { return step.Run(threads, first, n); };
  const std::vector<float> all = attend(2, 0, t);
  for (int threads : {1, 3}) EXPECT_EQ(attend(threads, 0, t), all) << threads << " threads";
  for (int64_t i = 0; i < t; ++i) {
    const std::vector<float> alone = attend(2, i, 1);
    ASSERT_EQ(0, std::memcmp(alone.data(), all.data() + i * nh * hd, alone.size() * 4))
        << "token " << i << " (sequence " << seq[i] << ", position " << pos[i] << ")";
  }
}

// QuantizeKvRow: the scale is max |x| / 127, every value comes back within half a step, the
// largest one exactly as +-127; zeros give scale 0, a non-finite value a non-finite scale.
TEST(QuantizeKvRow, KeepsEachValueWithinHalfAStep) {
  std::mt19937 rng(4);
  std::normal_distribution<float> normal;
  for (int64_t n : {1, 7, 128}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng) * 3.f;
    std::vector<int8_t> q(x.size(), 99);
    float scale = -1.f;
    QuantizeKvRow(x.data(), n, q.data(), &scale);
    float amax = 0.f;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    EXPECT_FLOAT_EQ(scale, amax / 127.f) << n;
    int at_max = 0;
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_LE(std::fabs(scale * q[j] - x[j]), scale * 0.5f * (1 + 1e-5f)) << n << " " << j;
      at_max += std::abs(q[j]) == 127;
    }
    EXPECT_GE(at_max, 1) << n;
  }
  std::vector<float> zeros(16, 0.f);
  std::vector<int8_t> q(16, 5);
  float scale = -1.f;
  QuantizeKvRow(zeros.data(), 16, q.data(), &scale);
  EXPECT_EQ(scale, 0.f);
  EXPECT_EQ(q, std::vector<int8_t>(16, 0));
  zeros[3] = std::numeric_limits<float>::infinity();
  QuantizeKvRow(zeros.data(), 16, q.data(), &scale);
  EXPECT_FALSE(std::isfinite(scale));
  EXPECT_EQ(q, std::vector<int8_t>(16, 0));
}

// SiluMul (the MoE's SwiGLU) against silu in double precision, over the whole float range the
// gate can take, into the same array as its input as the backend may: relative error within
// 1e-6 (its exp is ~1e-7), and no overflow or NaN at the extremes (below g = -87 it gives 0 for
// values under ~1e-36: an absolute 1e-35).
TEST(SiluMul, MatchesSiluTimesUpInDoubleAcrossTheRange) {
  std::vector<float> g, u;
  for (float x = -120.f; x <= 120.f; x += 0.0137f) g.push_back(x);
  for (float x :
       {0.f, -0.f, -87.5f, -88.f, -89.f, -103.9f, 88.5f, 89.f, 1e-30f, -1e-30f, 3e38f, -3e38f}) {
    g.push_back(x);
  }
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> up(-3.f, 3.f);
  for (size_t i = 0; i < g.size(); ++i) u.push_back(up(rng));
  std::vector<float> out = g;
  SiluMul(out.data(), u.data(), static_cast<int64_t>(out.size()), out.data());
  for (size_t i = 0; i < g.size(); ++i) {
    const double x = g[i], want = x / (1.0 + std::exp(-x)) * u[i];
    ASSERT_TRUE(std::isfinite(out[i])) << "g " << g[i];
    ASSERT_LE(std::fabs(out[i] - want), 1e-6 * std::fabs(want) + 1e-35) << "g " << g[i];
  }
}

// The activations the matmuls apply after their tiles (ApplyActInPlace), against GELU and SiLU in
// double across the range an activation can take: relative error within 1e-6 (an absolute 1e-35
// where the exact value underflows float), finite at the extremes, and each element the same
// value alone as inside a long array (the SIMD body and the remainder agree), so a row's output
// still does not depend on where a chunk of rows starts. GELU's tail below x = -3 is exp(-x^2 /
// 2 + ...) times a fit, and that argument in float carries rounding of ~1e-7 of x^2 / 2 (and
// half an ulp from the sum), so there the bound grows by 3e-7 x^2 / 2 relative (2.6e-5 at x =
// -13, where the value is 1e-38; the std::erf form gives 0 from x = -8 on).
TEST(ApplyActInPlace, MatchesGeluAndSiluInDoubleAcrossTheRange) {
  std::vector<float> v;
  for (float x = -120.f; x <= 120.f; x += 0.0137f) v.push_back(x);
  for (float x : {0.f, -0.f, -5.f, -9.f, -13.2f, -14.f, -87.5f, -89.f, 88.5f, 1e-30f, -1e-30f,
                  1e-40f, 3e38f, -3e38f}) {
    v.push_back(x);
  }
  for (Act act : {Act::kGelu, Act::kSilu}) {
    std::vector<float> out = v;
    ApplyActInPlace(act, out.data(), static_cast<int64_t>(out.size()));
    for (size_t i = 0; i < v.size(); ++i) {
      const double x = v[i];
      const double want =
          act == Act::kGelu ? 0.5 * x * std::erfc(-x / std::sqrt(2.0)) : x / (1.0 + std::exp(-x));
      const std::string what =
          std::string(act == Act::kGelu ? "gelu" : "silu") + " of " + std::to_string(v[i]);
      ASSERT_TRUE(std::isfinite(out[i])) << what;
      const double rel = act == Act::kGelu && x < -3 ? 1e-6 + 3e-7 * x * x / 2 : 1e-6;
      ASSERT_LE(std::fabs(out[i] - want), rel * std::fabs(want) + 1e-35) << what;
      float alone = v[i];
      ApplyActInPlace(act, &alone, 1);
      ASSERT_EQ(std::memcmp(&alone, &out[i], 4), 0) << what << ": alone and in the array";
    }
  }
  std::vector<float> none = v;
  ApplyActInPlace(Act::kNone, none.data(), static_cast<int64_t>(none.size()));
  EXPECT_EQ(std::memcmp(none.data(), v.data(), v.size() * 4), 0);
}

}  // namespace
}  // namespace zaya::cpu
