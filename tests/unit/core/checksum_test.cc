// xxhash64 against the published XXH64 reference vectors (every code path: <4, 4..7, 8..31 bytes, stripes).
#include "core/checksum.h"

#include <gtest/gtest.h>

#include <string>

namespace memtrain {
namespace {

uint64_t h(const std::string& s) { return xxhash64(s.data(), s.size()); }

TEST(Xxhash64, MatchesReferenceVectors) {
  EXPECT_EQ(h(""), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(h("a"), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(h("abc"), 0x44BC2CF5AD770999ull);
  EXPECT_EQ(h(std::string(32, 'a')), 0x856E843298F99AD7ull);  // exactly one 32-byte stripe
  EXPECT_EQ(h("Nobody inspects the spammish repetition"), 0xFBCEA83C8A378BF1ull);  // stripe + 4 + 3 tail
}

TEST(Xxhash64, SeedChangesTheHash) {
  const std::string s = "hello world";
  EXPECT_NE(xxhash64(s.data(), s.size(), 0), xxhash64(s.data(), s.size(), 1));
}

}  // namespace
}  // namespace memtrain
