// RoPE kernels against a float64 reference (HF LLaMA's rotate_half), finite differences, the strided layout, the
// large-position fallback, and backward as the inverse of forward.
#include "core/cpu/rope.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// The angle of pair i at position p as HF LLaMA forms it, every step in float32 as torch runs it:
// inv_freq = 1.0 / (theta ** (arange(0, D, 2).float() / D)), then pos.float() * inv_freq. At p ~ 1e5 one ulp of
// inv_freq moves the angle by ~1e-2 rad, so the oracle must round where torch rounds.
double hf_angle(int64_t p, int64_t i, int64_t D, double theta) {
  const float e = static_cast<float>(2 * i) / static_cast<float>(D);
  const float pw = static_cast<float>(std::pow(static_cast<double>(static_cast<float>(theta)), double(e)));
  const float inv_freq = 1.0f / pw;
  return static_cast<float>(p) * inv_freq;
}

// Float64 oracle for one call: y = x * cos + rotate_half(x) * sin per head, rotate_half(x) = (-x2, x1).
// With exact_angles, the angles are p / theta^(2i/D) in double instead.
std::vector<double> rope_ref(std::vector<double> x, int64_t tokens, int64_t H, int64_t D, int64_t ld,
                             const std::vector<int32_t>& pos, double theta, bool inverse = false,
                             bool exact_angles = false) {
  const int64_t half = D / 2;
  for (int64_t r = 0; r < tokens; ++r)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double a = exact_angles ? pos[r] / std::pow(theta, 2.0 * i / D) : hf_angle(pos[r], i, D, theta);
        const double c = std::cos(a), s = inverse ? -std::sin(a) : std::sin(a);
        double& x1 = x[r * ld + h * D + i];
        double& x2 = x[r * ld + h * D + half + i];
        const double y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
        x1 = y1;
        x2 = y2;
      }
  return x;
}

struct Case {
  int64_t tokens, H, D, ld;
};
// D/2 = 1, 9, 32, 65: all-tail, one past a vector, whole vectors, and odd; ld > H*D as in a fused qkv buffer.
const Case kCases[] = {{1, 1, 2, 2}, {5, 3, 18, 60}, {7, 2, 64, 3 * 128}, {4, 1, 130, 133}};

std::vector<int32_t> positions(int64_t tokens, int32_t max_pos, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> pos(tokens);
  for (auto& p : pos) p = static_cast<int32_t>(rng() % (max_pos + 1));
  pos[0] = 0;  // the identity rotation
  return pos;
}

TEST(RopeCpu, ForwardMatchesFloat64Reference) {
  for (const Case& cs : kCases) {
    for (double theta : {10000.0, 500000.0}) {
      for (int32_t max_pos : {64, 4096, 100000}) {  // 100000 * D > the cached table: the per-row fallback
        const int64_t n = cs.tokens * cs.ld;
        const std::vector<float> x0 = random_uniform(n, -2.0f, 2.0f, n + max_pos);
        const std::vector<int32_t> pos = positions(cs.tokens, max_pos, cs.D + max_pos);
        std::vector<float> x = x0;
        cpu::rope_forward(x.data(), cs.tokens, cs.H, cs.D, cs.ld, pos.data(), theta, test_pool());
        const std::vector<double> ref = rope_ref(to_double(x0), cs.tokens, cs.H, cs.D, cs.ld, pos, theta);
        for (int64_t i = 0; i < n; ++i) {
          // Same fp32 angles; cos/sin rounded to fp32 and two fp32 products and a sum: ~3e-7 of |x| <= 2. Columns
          // past H*D must be untouched. A swapped sign or pairing errs by ~1.
          ASSERT_NEAR(x[i], ref[i], 1e-6) << "D=" << cs.D << " max_pos=" << max_pos << " i=" << i;
          if (i % cs.ld >= cs.H * cs.D) {
            ASSERT_EQ(x[i], x0[i]);
          }
        }
      }
    }
  }
}

TEST(RopeCpu, SmallPositionsMatchExactAngles) {
  // Guards the convention itself (rotate_half pairs, inv_freq = theta^(-2i/D)), independent of hf_angle: for
  // positions <= 64 the fp32 angle is off by at most 64 * 6e-8 ~ 4e-6 rad, hence outputs by < 1e-5 of |x| <= 2.
  const int64_t tokens = 8, H = 2, D = 64, ld = H * D;
  const std::vector<float> x0 = random_uniform(tokens * ld, -2.0f, 2.0f, 3);
  const std::vector<int32_t> pos = {0, 1, 2, 3, 17, 31, 63, 64};
  std::vector<float> x = x0;
  cpu::rope_forward(x.data(), tokens, H, D, ld, pos.data(), 10000.0, test_pool());
  const auto ref = rope_ref(to_double(x0), tokens, H, D, ld, pos, 10000.0, false, /*exact_angles=*/true);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], ref[i], 2e-5) << i;
}

TEST(RopeCpu, BackwardMatchesFiniteDifferences) {
  for (const Case& cs : kCases) {
    const int64_t n = cs.tokens * cs.ld;
    const std::vector<float> x = random_uniform(n, -2.0f, 2.0f, 7 + n);
    const std::vector<float> r = random_uniform(n, -1.0f, 1.0f, 8 + n);  // L = sum(r * y): dy = r
    const std::vector<int32_t> pos = positions(cs.tokens, 4096, 9 + n);
    std::vector<float> dx = r;
    cpu::rope_backward(dx.data(), cs.tokens, cs.H, cs.D, cs.ld, pos.data(), 10000.0, test_pool());
    const auto idx = fd_indices(n);
    const auto numeric = finite_differences(to_double(x), idx, [&](const auto& v) {
      return dot(r, rope_ref(v, cs.tokens, cs.H, cs.D, cs.ld, pos, 10000.0));
    });
    // The loss is linear in x: differences are good to ~1e-9; the fp32 rotation to ~3e-7 relative. Padding
    // columns of dy pass through unchanged, as forward leaves them (their derivative is 1).
    EXPECT_LT(rel_l2(gather(dx, idx), numeric), 1e-6) << "D=" << cs.D;
  }
}

TEST(RopeCpu, BackwardUndoesForward) {
  const Case cs{33, 4, 64, 256};
  const std::vector<float> x0 = random_uniform(cs.tokens * cs.ld, -2.0f, 2.0f, 11);
  const std::vector<int32_t> pos = positions(cs.tokens, 2048, 12);
  std::vector<float> x = x0;
  cpu::rope_forward(x.data(), cs.tokens, cs.H, cs.D, cs.ld, pos.data(), 10000.0, test_pool());
  cpu::rope_backward(x.data(), cs.tokens, cs.H, cs.D, cs.ld, pos.data(), 10000.0, test_pool());
  // A rotation and its transpose: identity up to two fp32 roundings of cos^2 + sin^2 (~5e-7 of |x| <= 2).
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], x0[i], 2e-6) << i;
}

TEST(RopeCpu, CachedAndFallbackTablesAgreeBitwise) {
  // A call whose max position exceeds the cache takes the per-row path; rows at small positions must come out
  // with the same bits as from the cached table, or recompute and mixed batches would differ.
  const int64_t H = 2, D = 130, ld = H * D;
  const std::vector<float> x0 = random_uniform(3 * ld, -2.0f, 2.0f, 13);
  const std::vector<int32_t> small = {5, 300, 1000}, mixed = {5, 300, 1000000};
  std::vector<float> a = x0, b = x0;
  cpu::rope_forward(a.data(), 3, H, D, ld, small.data(), 10000.0, test_pool());
  cpu::rope_forward(b.data(), 3, H, D, ld, mixed.data(), 10000.0, test_pool());
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 2 * ld, b.begin()));
}

}  // namespace
}  // namespace memtrain
