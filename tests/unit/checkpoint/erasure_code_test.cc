// ErasureCode against the original bytes: random shards for (k, m) = (4, 2), (8, 2), (8, 3), every pattern of at
// most m lost shards rebuilt exactly, more than m refused without touching anything; the parity against a GF(2^8)
// computation of this file's own (carry-less products modulo x^8 + x^4 + x^3 + x^2 + 1, the Cauchy entries
// 1 / (i ^ j) by exponentiation), so an encoder that computed something else with a matching decoder would fail.
#include "checkpoint/erasure_code.h"

#include <gtest/gtest.h>

#include <random>

namespace memtrain::checkpoint {
namespace {

uint8_t gf_multiply(uint8_t a, uint8_t b) {
  unsigned product = 0, x = a;
  for (int bit = 0; bit < 8; ++bit) {
    if (b & (1u << bit)) product ^= x;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  return static_cast<uint8_t>(product);
}

uint8_t gf_inverse(uint8_t a) {  // a^254 = a^-1 in GF(2^8)
  uint8_t r = 1;
  for (int i = 0; i < 254; ++i) r = gf_multiply(r, a);
  return r;
}

std::vector<std::vector<uint8_t>> random_shards(int n, int64_t len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<uint8_t>> s(n, std::vector<uint8_t>(len));
  for (auto& v : s)
    for (auto& b : v) b = static_cast<uint8_t>(rng());
  return s;
}

TEST(ErasureCode, ParityIsTheCauchyCombinationOfTheData) {
  for (const auto [k, m] : {std::pair{4, 2}, std::pair{8, 3}}) {
    auto code = ErasureCode::create(k, m);
    ASSERT_TRUE(code.ok());
    const int64_t len = 1000;
    auto data = random_shards(k, len, 1);
    std::vector<std::vector<uint8_t>> parity(m, std::vector<uint8_t>(len));
    std::vector<const uint8_t*> in;
    std::vector<uint8_t*> out;
    for (auto& d : data) in.push_back(d.data());
    for (auto& p : parity) out.push_back(p.data());
    code->encode(len, in.data(), out.data());
    for (int j = 0; j < m; ++j) {
      for (int64_t b = 0; b < len; ++b) {
        uint8_t want = 0;
        for (int i = 0; i < k; ++i) want ^= gf_multiply(gf_inverse(static_cast<uint8_t>((k + j) ^ i)), data[i][b]);
        ASSERT_EQ(parity[j][b], want) << "k " << k << " parity " << j << " byte " << b;
      }
    }
  }
}

class ErasurePatterns : public ::testing::TestWithParam<std::tuple<int, int, int64_t>> {};

TEST_P(ErasurePatterns, EveryPatternOfAtMostMLossesIsRebuiltExactly) {
  const auto [k, m, len] = GetParam();
  auto code = ErasureCode::create(k, m);
  ASSERT_TRUE(code.ok()) << code.status();
  const int n = k + m;
  auto original = random_shards(n, len, static_cast<uint32_t>(k * 100 + m));
  {
    std::vector<const uint8_t*> in;
    std::vector<uint8_t*> out;
    for (int i = 0; i < k; ++i) in.push_back(original[i].data());
    for (int j = 0; j < m; ++j) out.push_back(original[k + j].data());
    code->encode(len, in.data(), out.data());
  }
  int patterns = 0;
  for (unsigned mask = 0; mask < (1u << n); ++mask) {
    const int lost = __builtin_popcount(mask);
    auto shards = original;
    std::vector<bool> present(n);
    std::vector<uint8_t*> ptrs;
    for (int i = 0; i < n; ++i) {
      present[i] = !(mask & (1u << i));
      if (!present[i]) std::fill(shards[i].begin(), shards[i].end(), 0xA5);  // what a lost shard's buffer holds
      ptrs.push_back(shards[i].data());
    }
    const absl::Status st = code->rebuild(len, ptrs.data(), present);
    if (lost > m) {
      ASSERT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
      for (int i = 0; i < n; ++i) {
        if (!present[i]) ASSERT_EQ(shards[i][0], 0xA5) << "a refused rebuild wrote shard " << i;
      }
      continue;
    }
    ASSERT_TRUE(st.ok()) << st;
    for (int i = 0; i < n; ++i) ASSERT_EQ(shards[i], original[i]) << "mask " << mask << " shard " << i;
    ++patterns;
  }
  int expected = 0;
  for (unsigned mask = 0; mask < (1u << n); ++mask) expected += __builtin_popcount(mask) <= m;
  EXPECT_EQ(patterns, expected);
}

INSTANTIATE_TEST_SUITE_P(Codes, ErasurePatterns,
                         ::testing::Values(std::tuple{4, 2, int64_t{4099}}, std::tuple{8, 2, int64_t{65537}},
                                           std::tuple{8, 3, int64_t{17}}, std::tuple{4, 2, int64_t{1}}),
                         [](const auto& info) {
                           return "k" + std::to_string(std::get<0>(info.param)) + "_m" +
                                  std::to_string(std::get<1>(info.param)) + "_len" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(ErasureCode, RefusesImpossibleShapes) {
  EXPECT_EQ(ErasureCode::create(0, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErasureCode::create(200, 57).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ErasureCode::create(4, 0).ok());
}

}  // namespace
}  // namespace memtrain::checkpoint
