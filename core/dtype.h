// Element types and the conversions between them (bf16 and fp16 round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace memtrain {

enum class DType : uint8_t { kF32, kBF16, kF16, kI8, kU8, kI32, kU16 };

size_t dtype_size(DType dt);
absl::string_view dtype_name(DType dt);  // "f32", "bf16", ...
absl::StatusOr<DType> dtype_from_name(absl::string_view name);

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// Round to nearest even; NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

// Converts n elements between any two float types (f32, bf16, f16); src and dst may not alias.
void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n);

}  // namespace memtrain
