// The int8 weight format every backend reads (dtype.h QuantizeI8Row): block scales, rounding half
// away from zero, the short last block, all-zero blocks. And FirstNonFinite, the load's check
// that no weight is NaN or infinite.
#include "engine/weights/dtype.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

namespace zaya {
namespace {

constexpr int kB = ZAYA_I8_BLOCK;

TEST(QuantizeI8Row, BlockIsTheAbiBlock) {
  // The format every backend reads (zaya/backend.h): a scale per 128 values since ABI 2.
  EXPECT_EQ(kB, 128);
  EXPECT_EQ(zaya_i8_scales(1), 1);
  EXPECT_EQ(zaya_i8_scales(kB), 1);
  EXPECT_EQ(zaya_i8_scales(kB + 1), 2);
}

TEST(QuantizeI8Row, ScaleIsTheBlockMaxOver127AndTheMaxMapsTo127) {
  std::vector<float> v(kB, 0.f);
  for (int i = 0; i < 32; ++i) v[i] = 0.01f * static_cast<float>(i - 16);  // max |v| = 0.16
  std::vector<int8_t> q(kB);
  float scale = 0;
  QuantizeI8Row(v.data(), kB, q.data(), &scale);
  EXPECT_FLOAT_EQ(scale, 0.16f / 127.f);
  EXPECT_EQ(q[0], -127);
  EXPECT_EQ(q[16], 0);
  for (int i = 0; i < kB; ++i) {
    // Dequantized, every value is within half a step of the original.
    EXPECT_LE(std::fabs(static_cast<float>(q[i]) * scale - v[i]), 0.5f * scale * 1.0001f) << i;
  }
}

TEST(QuantizeI8Row, HalvesRoundAwayFromZeroOnBothSides) {
  // Block max 127 gives scale 1, so each value is its own quantized value before rounding.
  std::vector<float> v = {127.f, 2.5f, -2.5f, 0.5f, -0.5f, 2.49f, -2.49f, -0.f, 126.5f, -126.5f};
  v.resize(kB, 0.f);
  std::vector<int8_t> q(kB);
  float scale = 0;
  QuantizeI8Row(v.data(), kB, q.data(), &scale);
  ASSERT_EQ(scale, 1.f);
  const std::vector<int> want = {127, 3, -3, 1, -1, 2, -2, 0, 127, -127};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(q[i], want[i]) << "value " << v[i];
}

TEST(QuantizeI8Row, ShortLastBlockAndAllZeroBlockGetTheirOwnScales) {
  // 2 x 128 + 6 columns: blocks of 128, 128 and 6; the middle one all zeros (scale 1, so
  // dequantizing is harmless), the last one scaled by its own max only.
  const int n = 2 * kB + 6;
  std::vector<float> v(n, 0.f);
  for (int i = 0; i < kB; ++i) v[i] = 1.f;
  for (int i = 2 * kB; i < n; ++i) v[i] = -0.25f * static_cast<float>(i - 2 * kB + 1);  // max 1.5
  std::vector<int8_t> q(n, 99);
  std::vector<float> scales(3, -1.f);
  QuantizeI8Row(v.data(), n, q.data(), scales.data());
  EXPECT_FLOAT_EQ(scales[0], 1.f / 127.f);
  EXPECT_EQ(scales[1], 1.f);
  EXPECT_FLOAT_EQ(scales[2], 1.5f / 127.f);
  EXPECT_EQ(q[0], 127);
  for (int i = kB; i < 2 * kB; ++i) EXPECT_EQ(q[i], 0) << i;
  EXPECT_EQ(q[n - 1], -127);
  EXPECT_EQ(q[2 * kB], static_cast<int8_t>(std::lround(-0.25f / (1.5f / 127.f))));
}

TEST(QuantizeI8Row, MatchesLroundOfTheScaledValueEverywhere) {
  // The branch-free rounding against the plain definition, over many blocks of varied range.
  std::vector<float> v(kB * 16 + 17);
  uint32_t s = 12345;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = (static_cast<float>(s >> 8) / 16777216.f - 0.5f) * static_cast<float>(1 + (s & 7));
  }
  std::vector<int8_t> q(v.size());
  std::vector<float> scales(static_cast<size_t>(zaya_i8_scales(static_cast<int64_t>(v.size()))));
  ASSERT_EQ(scales.size(), 17u);
  QuantizeI8Row(v.data(), static_cast<int64_t>(v.size()), q.data(), scales.data());
  for (size_t i = 0; i < v.size(); ++i) {
    const float r = std::fmin(127.f, std::fmax(-127.f, v[i] / scales[i / kB]));
    ASSERT_EQ(q[i], static_cast<int8_t>(std::lround(r))) << "index " << i << " value " << v[i];
  }
}

// The block max is taken over the float bits (dtype.cc, so that it vectorizes): it must find the
// max at any position of a block, the short last one included, for denormal, ordinary and the
// largest finite magnitudes of either sign, with -0 around it.
TEST(QuantizeI8Row, FindsTheBlockMaxAtEveryPositionAndMagnitude) {
  for (const float m : {1e-40f, 1.f, std::numeric_limits<float>::max()}) {
    for (const int len : {kB, 5}) {
      for (int p = 0; p < len; ++p) {
        for (const float sign : {1.f, -1.f}) {
          std::vector<float> v(static_cast<size_t>(len), -0.f);
          for (int i = 0; i < len; i += 3) v[i] = m / 4;
          v[p] = sign * m;
          std::vector<int8_t> q(static_cast<size_t>(len));
          float scale = 0;
          QuantizeI8Row(v.data(), len, q.data(), &scale);
          ASSERT_EQ(scale, m / 127.f) << "max " << m << " at " << p << " of " << len;
          ASSERT_EQ(q[p], sign > 0 ? 127 : -127) << "max " << m << " at " << p << " of " << len;
        }
      }
    }
  }
}

// Finite extremes (the largest values, denormals, negative zero) pass in every dtype; a NaN or an
// infinity is found at its exact index, before, on and after the scan's 256-value block edges.
TEST(FirstNonFinite, FindsTheFirstNanOrInfinityAndNothingElse) {
  struct Kind {
    DType dtype;
    std::vector<uint32_t> finite, bad;  // bit patterns
  };
  const Kind kinds[] = {
      {DType::kF32, {0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x80000000u, 0x3f800000u},
       {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffffffffu}},
      {DType::kBF16, {0x7f7fu, 0xff7fu, 0x0001u, 0x8000u, 0x3f80u}, {0x7f80u, 0xff80u, 0x7fc0u}},
      {DType::kF16, {0x7bffu, 0xfbffu, 0x0001u, 0x8000u, 0x3c00u}, {0x7c00u, 0xfc00u, 0x7e00u}},
  };
  for (const Kind& kind : kinds) {
    const size_t esz = DTypeSize(kind.dtype), n = 1000;
    std::vector<std::byte> data(n * esz);
    auto put = [&](size_t i, uint32_t bits) {
      if (esz == 4) {
        std::memcpy(data.data() + i * 4, &bits, 4);
      } else {
        const auto b16 = static_cast<uint16_t>(bits);
        std::memcpy(data.data() + i * 2, &b16, 2);
      }
    };
    for (size_t i = 0; i < n; ++i) put(i, kind.finite[i % kind.finite.size()]);
    EXPECT_EQ(FirstNonFinite(kind.dtype, data.data(), n), -1) << DTypeName(kind.dtype);
    for (uint32_t bad : kind.bad) {
      for (size_t at : {size_t{0}, size_t{255}, size_t{256}, size_t{700}, n - 1}) {
        const std::vector<std::byte> clean = data;
        put(at, bad);
        if (at + 40 < n) put(at + 40, bad);  // a later one does not hide the first
        EXPECT_EQ(FirstNonFinite(kind.dtype, data.data(), n), static_cast<int64_t>(at))
            << DTypeName(kind.dtype) << " bits " << bad << " at " << at;
        // The count bounds the scan: a value just past it is not seen.
        if (at > 0) {
          EXPECT_EQ(FirstNonFinite(kind.dtype, data.data(), at), -1);
        }
        data = clean;
      }
    }
  }
}

}  // namespace
}  // namespace zaya
