#include "engine/weights/dtype.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace zaya {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  return 0;
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

std::optional<DType> ParseDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return std::nullopt;
}

float Bf16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

float F16ToF32(uint16_t bits) {
  const uint32_t sign = (bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: value = mantissa * 2^-24.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t F32ToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

namespace {

// Bits of one element (exponent all ones = NaN or infinity) and its exponent mask.
template <class Bits>
int64_t FirstNonFiniteOf(const std::byte* src, size_t count, Bits exp_mask) {
  constexpr size_t kBlock = 256;
  for (size_t b = 0; b < count; b += kBlock) {
    const size_t len = std::min(kBlock, count - b);
    Bits any = 0;  // an OR over the block vectorizes; a per-value branch would not
    for (size_t i = 0; i < len; ++i) {
      Bits v;
      std::memcpy(&v, src + (b + i) * sizeof(Bits), sizeof(Bits));
      any |= static_cast<Bits>((v & exp_mask) == exp_mask);
    }
    if (any != 0) {
      for (size_t i = 0; i < len; ++i) {
        Bits v;
        std::memcpy(&v, src + (b + i) * sizeof(Bits), sizeof(Bits));
        if ((v & exp_mask) == exp_mask) return static_cast<int64_t>(b + i);
      }
    }
  }
  return -1;
}

}  // namespace

int64_t FirstNonFinite(DType dtype, const std::byte* src, size_t count) {
  switch (dtype) {
    case DType::kF32: return FirstNonFiniteOf<uint32_t>(src, count, 0x7f800000u);
    case DType::kF16: return FirstNonFiniteOf<uint16_t>(src, count, 0x7c00u);
    case DType::kBF16: return FirstNonFiniteOf<uint16_t>(src, count, 0x7f80u);
  }
  return -1;
}

namespace {

// Bf16ToF32's shift spelled out: that function is exported, and GCC keeps an exported function's
// calls as calls (with -fPIC it may be interposed), which would not vectorize.
void Bf16RunToF32(const std::byte* __restrict src, size_t count, float* __restrict dst) {
  for (size_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    dst[i] = std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
  }
}

// One block of len <= ZAYA_I8_BLOCK values; returns its scale. Written so that GCC vectorizes
// both loops (dtype.cc is built with -O3): every int8 load quantizes all 8.8e9 weights of the 8B
// shape. The max is taken over the bits, where for finite floats with the sign cleared integer
// order is float order and an integer max is a vector reduction (a float one is not, for NaN's
// and -0's sake). v / scale stays a division (a reciprocal would move some values to the next
// step); it never reaches 127.5 (scale = max / 127 rounded is at most a few ulps off), so the
// clamp can act on the integer, after the cast that truncates r +- 0.5 (rounding half away from
// zero). A branch on r's sign instead mispredicted on every other weight and took 60% of a
// load; the scalar version of this ran 1.3 GB/s of f32 on one core of the Xeon of session 24,
// this one 7.1 with the AVX-512 clone (bitwise the same output).
inline float QuantizeI8Block(const float* __restrict v, int64_t len, int8_t* __restrict q) {
  uint32_t amax_bits = 0;
  for (int64_t i = 0; i < len; ++i) {
    const uint32_t a = std::bit_cast<uint32_t>(v[i]) & 0x7fffffffu;
    amax_bits = a > amax_bits ? a : amax_bits;
  }
  const float amax = std::bit_cast<float>(amax_bits);
  const float scale = amax > 0.f ? amax / 127.f : 1.f;
  for (int64_t i = 0; i < len; ++i) {
    const float r = v[i] / scale;
    const float half =
        std::bit_cast<float>((std::bit_cast<uint32_t>(r) & 0x80000000u) | 0x3f000000u);
    int32_t t = static_cast<int32_t>(r + half);
    t = t > 127 ? 127 : t;
    t = t < -127 ? -127 : t;
    q[i] = static_cast<int8_t>(t);
  }
  return scale;
}

}  // namespace

// One clone per x86-64 level: the division is most of the work, and AVX-512 does 16 at a time.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void QuantizeI8Row(
    const float* v, int64_t cols, int8_t* q, float* scales) {
  int64_t b = 0, j = 0;
  for (; j + ZAYA_I8_BLOCK <= cols; j += ZAYA_I8_BLOCK, ++b)
    scales[b] = QuantizeI8Block(v + j, ZAYA_I8_BLOCK, q + j);
  if (j < cols) scales[b] = QuantizeI8Block(v + j, cols - j, q + j);
}

void ConvertToF32(DType dtype, const std::byte* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::kBF16:  // a loop of its own (and restrict), so that it vectorizes
      Bf16RunToF32(src, count, dst);
      return;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = F16ToF32(bits);
      }
      return;
  }
}

}  // namespace zaya
