// Regression tests for what fuzzing (tests/fuzz) found in the token shard reader. Each crashing input also sits in
// tests/fuzz/corpus/fuzz_token_shard*/ so the fuzzers replay it on every run.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/checksum.h"
#include "data/token_shard.h"
#include "tests/unit/data/test_dir.h"

namespace memtrain {
namespace {

using testing_util::TestDir;
using testing_util::write_bytes;

// Found by fuzz_token_shard_repaired (corpus file crash-token-out-of-vocab.bin; below as the parser saw it, with the
// checksums the target filled in): a shard whose checksums match but whose tokens lie outside the vocabulary its
// header declares (vocab 256; token 39409 at index 4, uint16) was accepted, and the trainer would index its
// embedding table out of bounds. open() now checks every token.
TEST(FuzzRegression, TokenShardTokenOutsideVocabulary) {
  const unsigned char kInput[] = {
      0x4d, 0x54, 0x54, 0x4f, 0x4b, 0x45, 0x4e, 0x53, 0x01, 0x00, 0x00, 0x00,
      0x02, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x17, 0xe1, 0xf9, 0x93,
      0xe5, 0x25, 0xbc, 0xf8, 0xee, 0xff, 0xdb, 0xe0, 0x2e, 0xa0, 0x59, 0x80,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x2a, 0x00, 0x4f, 0x00, 0x74, 0x00,
      0xf1, 0x99, 0x00, 0xbe, 0x00, 0xe3, 0x00, 0x08, 0x00, 0x2d, 0x2a, 0x00,
      0x00, 0x52, 0x00, 0x77, 0x00, 0x9c, 0x00, 0xc1, 0x00, 0xe6, 0x00, 0x0b,
      0x00, 0x30, 0x00, 0x55, 0x00, 0x7a, 0x00, 0x9f, 0x00, 0xc4, 0x00, 0xe9,
      0x00, 0x0e, 0x00, 0x33,
  };
  TestDir dir;
  const std::string path = dir.file("crafted.bin");
  write_bytes(path, std::string(reinterpret_cast<const char*>(kInput), sizeof(kInput)));
  absl::StatusOr<data::TokenShard> shard = data::TokenShard::open(path);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument) << shard.status();
  EXPECT_NE(shard.status().message().find(path), std::string::npos) << shard.status();
  EXPECT_NE(shard.status().message().find("token 39409 at index 4 is outside the vocabulary [0, 256)"),
            std::string::npos)
      << shard.status();
}

// The same with uint32 tokens: a valid shard whose last token is raised to vocab_size, checksums recomputed.
TEST(FuzzRegression, TokenShardUint32TokenEqualToVocabulary) {
  TestDir dir;
  const std::string path = dir.file("crafted32.bin");
  ASSERT_TRUE(data::write_token_shard(path, {1, 2, 99999}, 100000).ok());
  std::string bytes = testing_util::read_bytes(path);
  ASSERT_EQ(bytes.size(), 64u + 3 * 4);
  const uint32_t bad = 100000;
  std::memcpy(bytes.data() + 64 + 8, &bad, 4);
  const uint64_t body = xxhash64(bytes.data() + 64, bytes.size() - 64);
  std::memcpy(bytes.data() + 32, &body, 8);
  const uint64_t header = xxhash64(bytes.data(), 40);
  std::memcpy(bytes.data() + 40, &header, 8);
  write_bytes(path, bytes);
  absl::StatusOr<data::TokenShard> shard = data::TokenShard::open(path);
  ASSERT_FALSE(shard.ok());
  EXPECT_NE(shard.status().message().find("token 100000 at index 2"), std::string::npos) << shard.status();
}

}  // namespace
}  // namespace memtrain
