// Counter-based Philox4x32-10 (Salmon et al., SC'11). A stream is keyed by (seed, name); element i of the stream
// depends on nothing else, so any slice of a tensor is generated without generating the rest (DESIGN.md:
// layout-independent randomness).
#pragma once

#include <array>
#include <cstdint>
#include "absl/strings/string_view.h"

namespace memtrain {

struct PhiloxKey {
  uint32_t k0 = 0, k1 = 0;
};

// Mixes the seed with a 64-bit FNV-1a hash of `name` ("transformer.h.3.attn.c_attn.weight").
PhiloxKey philox_key(uint64_t seed, absl::string_view name);

// Ten rounds over a 128-bit counter (Random123's philox4x32_10).
std::array<uint32_t, 4> philox4x32_block(PhiloxKey key, std::array<uint32_t, 4> counter);
// The same over the counter (counter_lo, counter_hi, 0, 0).
std::array<uint32_t, 4> philox4x32(PhiloxKey key, uint64_t counter);

// Elements [offset, offset + n) of the stream: uniform in [lo, hi); normal with mean and std (Box-Muller over
// consecutive pairs of uniforms, four values per Philox block).
void philox_uniform(PhiloxKey key, int64_t offset, int64_t n, float lo, float hi, float* out);
void philox_normal(PhiloxKey key, int64_t offset, int64_t n, float mean, float std, float* out);

// A uniform double in [0, 1) from 53 bits of block `counter`.
double philox_unit_double(PhiloxKey key, uint64_t counter);

}  // namespace memtrain
