// Philox4x32-10 against the Random123 known-answer vectors, and the layout independence the project relies on.
#include "core/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace memtrain {
namespace {

TEST(Philox, MatchesRandom123KnownAnswers) {
  // kat_vectors from Random123 (philox4x32_10): counter (0,0,0,0) with key (0,0), and the pi-digits vector.
  EXPECT_EQ(philox4x32_block({0, 0}, {0, 0, 0, 0}), (std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32_block({0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}),
            (std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32_block({0xa4093822, 0x299f31d0}, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}),
            (std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
  // The 64-bit counter form puts the counter in the first two words.
  EXPECT_EQ(philox4x32({0xa4093822, 0x299f31d0}, 0x85a308d3243f6a88ull),
            philox4x32_block({0xa4093822, 0x299f31d0}, {0x243f6a88, 0x85a308d3, 0, 0}));
}

TEST(Philox, AnySliceEqualsTheSameSliceOfTheWhole) {
  const PhiloxKey key = philox_key(42, "transformer.h.0.attn.c_attn.weight");
  std::vector<float> whole(1001), part(333);
  philox_normal(key, 0, 1001, 0.0f, 0.02f, whole.data());
  for (int64_t offset : {0, 1, 3, 4, 500, 668}) {
    philox_normal(key, offset, 333, 0.0f, 0.02f, part.data());
    for (int i = 0; i < 333; ++i) ASSERT_EQ(part[i], whole[offset + i]) << offset << " " << i;
  }
}

// The streams are defined element by element: element e is lane e % 4 of block e / 4, a normal from the Box-Muller
// pair of its lanes (cosine for the even lane, sine for the odd). The fills generate each block once; every
// element of every slice must equal that definition, bit for bit (checkpoints and zo_sgd's directions rely on it).
TEST(Philox, FillsEqualTheElementWiseDefinition) {
  const PhiloxKey key = philox_key(3, "w");
  auto unit = [](uint32_t u) { return (static_cast<double>(u) + 1.0) * (1.0 / 4294967296.0); };
  for (int64_t offset = 0; offset < 8; ++offset)
    for (int64_t n = 0; n < 14; ++n) {
      std::vector<float> z(n), u(n);
      philox_normal(key, offset, n, 0.5f, 2.0f, z.data());
      philox_uniform(key, offset, n, -1.0f, 3.0f, u.data());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t e = offset + i;
        const auto b = philox4x32(key, static_cast<uint64_t>(e / 4));
        const int pair = static_cast<int>(e % 4) / 2 * 2;
        const double r = std::sqrt(-2.0 * std::log(unit(b[pair]))), theta = 2.0 * M_PI * unit(b[pair + 1]);
        const double normal = e % 2 == 0 ? r * std::cos(theta) : r * std::sin(theta);
        ASSERT_EQ(z[i], static_cast<float>(0.5f + 2.0f * normal)) << offset << " " << n << " " << i;
        ASSERT_EQ(u[i], static_cast<float>(-1.0f + 4.0f * (static_cast<double>(b[e % 4]) * (1.0 / 4294967296.0))))
            << offset << " " << n << " " << i;
      }
    }
}

TEST(Philox, NamesAndSeedsGiveDifferentStreams) {
  std::vector<float> a(64), b(64), c(64);
  philox_uniform(philox_key(1, "a"), 0, 64, 0, 1, a.data());
  philox_uniform(philox_key(1, "b"), 0, 64, 0, 1, b.data());
  philox_uniform(philox_key(2, "a"), 0, 64, 0, 1, c.data());
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
}

TEST(Philox, NormalMomentsAndUniformRange) {
  // 200k samples: the sample mean's std is 1/sqrt(n) ~ 0.0022 and the variance's ~ sqrt(2/n) ~ 0.0032, so 5 sigma
  // bounds are 0.011 and 0.016; a wrong Box-Muller (e.g. missing sqrt) misses by far more.
  const int64_t n = 200000;
  std::vector<float> z(n), u(n);
  philox_normal(philox_key(7, "x"), 0, n, 0.0f, 1.0f, z.data());
  philox_uniform(philox_key(7, "y"), 0, n, -2.0f, 3.0f, u.data());
  double mean = 0, var = 0, umean = 0;
  for (int64_t i = 0; i < n; ++i) {
    mean += z[i];
    ASSERT_GE(u[i], -2.0f);
    ASSERT_LT(u[i], 3.0f);
    umean += u[i];
  }
  mean /= n;
  for (float v : z) var += (v - mean) * (v - mean);
  var /= n;
  EXPECT_NEAR(mean, 0.0, 0.011);
  EXPECT_NEAR(var, 1.0, 0.016);
  EXPECT_NEAR(umean / n, 0.5, 0.02);  // uniform on [-2, 3): std of the mean 1.44/sqrt(n) = 0.0032
}

}  // namespace
}  // namespace memtrain
