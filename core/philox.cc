#include "core/philox.h"

#include <cmath>

namespace memtrain {
namespace {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// (0, 1]: never 0, so log() in Box-Muller is finite.
inline double unit_open_closed(uint32_t u) { return (static_cast<double>(u) + 1.0) * (1.0 / 4294967296.0); }
}  // namespace

PhiloxKey philox_key(uint64_t seed, absl::string_view name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a offset basis
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  // splitmix64 finaliser over seed ^ hash, so nearby seeds give unrelated keys.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ h;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return PhiloxKey{static_cast<uint32_t>(z), static_cast<uint32_t>(z >> 32)};
}

std::array<uint32_t, 4> philox4x32(PhiloxKey key, uint64_t counter) {
  return philox4x32_block(key, {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0, 0});
}

std::array<uint32_t, 4> philox4x32_block(PhiloxKey key, std::array<uint32_t, 4> counter) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key.k0, k1 = key.k1;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c0, hi0, lo0);
    mulhilo(kM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

// Both fill elements [offset, offset + n) block by block: one Philox block gives four consecutive elements, so each
// block is generated once (per element it was four times), and Box-Muller's radius and angle once per pair. The
// values are those of the element-wise formula, bit for bit, whatever the offset and n.
void philox_uniform(PhiloxKey key, int64_t offset, int64_t n, float lo, float hi, float* out) {
  for (int64_t e = offset; e < offset + n;) {
    const auto block = philox4x32(key, static_cast<uint64_t>(e / 4));
    for (int64_t lane = e % 4; lane < 4 && e < offset + n; ++lane, ++e) {
      const double u = static_cast<double>(block[lane]) * (1.0 / 4294967296.0);  // [0, 1)
      out[e - offset] = static_cast<float>(lo + (hi - lo) * u);
    }
  }
}

void philox_normal(PhiloxKey key, int64_t offset, int64_t n, float mean, float std, float* out) {
  for (int64_t e = offset; e < offset + n;) {
    const auto block = philox4x32(key, static_cast<uint64_t>(e / 4));
    for (int pair = static_cast<int>(e % 4) / 2 * 2; pair < 4 && e < offset + n; pair += 2) {
      // Lanes (0,1) and (2,3) form Box-Muller pairs: the even lane takes the cosine, the odd one the sine.
      const double r = std::sqrt(-2.0 * std::log(unit_open_closed(block[pair])));
      const double theta = 2.0 * M_PI * unit_open_closed(block[pair + 1]);
      if (e % 2 == 0) out[e++ - offset] = static_cast<float>(mean + std * (r * std::cos(theta)));
      if (e < offset + n) out[e++ - offset] = static_cast<float>(mean + std * (r * std::sin(theta)));
    }
  }
}

double philox_unit_double(PhiloxKey key, uint64_t counter) {
  const auto b = philox4x32(key, counter);
  const uint64_t bits = (static_cast<uint64_t>(b[0]) << 32 | b[1]) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

}  // namespace memtrain
