// Element types of checkpoint tensors and conversions between them.
//
// Checkpoints store BF16 (ZAYA1's native dtype), F16 or F32, little-endian. Conversions here are
// the reference ones: BF16/F16 -> F32 is exact; F32 -> BF16 rounds to nearest even (NaN stays NaN).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "zaya/backend.h"  // ZAYA_I8_BLOCK, zaya_i8_scales

namespace zaya {

enum class DType : uint8_t { kF32, kF16, kBF16 };

// Bytes per element: 4, 2, 2.
size_t DTypeSize(DType dtype);

// The safetensors spelling: "F32", "F16", "BF16".
std::string_view DTypeName(DType dtype);

// Parses a safetensors dtype string; nullopt for anything zayad cannot load (I8, F64, ...).
std::optional<DType> ParseDType(std::string_view name);

float Bf16ToF32(uint16_t bits);
float F16ToF32(uint16_t bits);
uint16_t F32ToBf16(float value);

// Converts `count` elements at `src` (any alignment) to f32 in `dst`.
void ConvertToF32(DType dtype, const std::byte* src, size_t count, float* dst);

// Index of the first NaN or infinity among `count` elements at `src` (any alignment), or -1.
// Branch-free over blocks of values (it runs over every weight at load), exact index on a hit.
int64_t FirstNonFinite(DType dtype, const std::byte* src, size_t count);

// The int8 weight format (model.weights_dtype = "int8", backend.h ZAYA_DTYPE_I8): a row of `cols`
// values in blocks of ZAYA_I8_BLOCK = 128 (the last may be shorter), each with scale = max|v| / 127
// (1 for an all-zero block) and q = v / scale rounded half away from zero, clamped to [-127, 127].
// q[cols], scales[zaya_i8_scales(cols)]. v must be finite (FirstNonFinite): the loader rejects
// checkpoints with NaN or infinite weights before they get here.
void QuantizeI8Row(const float* v, int64_t cols, int8_t* q, float* scales);

}  // namespace zaya
