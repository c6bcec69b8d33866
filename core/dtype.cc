#include "core/dtype.h"

#include <cmath>

#include "core/status.h"
#include "absl/strings/str_cat.h"

namespace memtrain {

size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::kF32: case DType::kI32: return 4;
    case DType::kBF16: case DType::kF16: case DType::kU16: return 2;
    case DType::kI8: case DType::kU8: return 1;
  }
  MEMTRAIN_CHECK(false);
}

absl::string_view dtype_name(DType dt) {
  switch (dt) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI8: return "i8";
    case DType::kU8: return "u8";
    case DType::kI32: return "i32";
    case DType::kU16: return "u16";
  }
  MEMTRAIN_CHECK(false);
}

absl::StatusOr<DType> dtype_from_name(absl::string_view name) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kU8, DType::kI32, DType::kU16})
    if (dtype_name(dt) == name) return dt;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    // The half subnormal step is 2^-24; rint rounds to nearest even as the FPU does by default.
    const float scaled = f32_from_bits(abs) * 16777216.0f;  // exact: a power-of-two scale
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
  uint32_t h = abs - 0x38000000u;
  h += 0xfffu + ((h >> 13) & 1u);
  return static_cast<uint16_t>(sign | (h >> 13));
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

namespace {
float load(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: MEMTRAIN_CHECK_MSG(false, "convert: not a float type");
  }
}
void store(void* p, DType dt, int64_t i, float v) {
  switch (dt) {
    case DType::kF32: static_cast<float*>(p)[i] = v; return;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); return;
    case DType::kF16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); return;
    default: MEMTRAIN_CHECK_MSG(false, "convert: not a float type");
  }
}
}  // namespace

void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(dst, dst_type, i, load(src, src_type, i));
}

}  // namespace memtrain
