// Token shards: write/open round trips, and every kind of damaged file is refused with its path and the reason.
#include "data/token_shard.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>

#include "core/status.h"
#include "core/checksum.h"
#include "tests/unit/data/test_dir.h"

namespace memtrain {
namespace {

using data::TokenShard;
using data::write_token_shard;
using testing_util::read_bytes;
using testing_util::TestDir;
using testing_util::write_bytes;

std::vector<int32_t> ramp(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return t;
}

void expect_contents(const TokenShard& shard, const std::vector<int32_t>& tokens) {
  ASSERT_EQ(shard.size(), static_cast<int64_t>(tokens.size()));
  std::vector<int32_t> all(tokens.size());
  shard.copy(0, shard.size(), all.data());
  EXPECT_EQ(all, tokens);
  for (int64_t i = 0; i < shard.size(); i += 97) EXPECT_EQ(shard[i], tokens[i]) << i;
}

TEST(TokenShard, RoundTripUint16) {
  TestDir dir;
  const std::string path = dir.file("train.bin");
  std::vector<int32_t> tokens = ramp(1000, 65536);
  tokens.push_back(65535);  // the largest id that still fits uint16
  tokens.push_back(0);
  ASSERT_TRUE(write_token_shard(path, tokens, 65536).ok());
  EXPECT_EQ(std::filesystem::file_size(path), 64u + 2 * tokens.size());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto shard = TokenShard::open(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->vocab_size(), 65536);
  EXPECT_EQ(shard->token_bytes(), 2);
  EXPECT_EQ(shard->path(), path);
  expect_contents(*shard, tokens);
  std::vector<int32_t> mid(5);
  shard->copy(500, 5, mid.data());
  EXPECT_EQ(mid, std::vector<int32_t>(tokens.begin() + 500, tokens.begin() + 505));
}

TEST(TokenShard, RoundTripUint32) {
  TestDir dir;
  const std::string path = dir.file("big_vocab.bin");
  std::vector<int32_t> tokens = ramp(1001, 70000);
  tokens.push_back(69999);
  tokens.push_back(65536);  // would wrap to 0 in uint16
  ASSERT_TRUE(write_token_shard(path, tokens, 70000).ok());
  EXPECT_EQ(std::filesystem::file_size(path), 64u + 4 * tokens.size());
  auto shard = TokenShard::open(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->vocab_size(), 70000);
  EXPECT_EQ(shard->token_bytes(), 4);
  expect_contents(*shard, tokens);
}

TEST(TokenShard, EmptyShardRoundTrips) {
  TestDir dir;
  ASSERT_TRUE(write_token_shard(dir.file("e.bin"), {}, 256).ok());
  auto shard = TokenShard::open(dir.file("e.bin"));
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->size(), 0);
}

TEST(TokenShard, MoveKeepsTheMapping) {
  TestDir dir;
  const std::vector<int32_t> tokens = ramp(300, 256);
  ASSERT_TRUE(write_token_shard(dir.file("m.bin"), tokens, 256).ok());
  auto opened = TokenShard::open(dir.file("m.bin"));
  ASSERT_TRUE(opened.ok());
  TokenShard a = std::move(opened).value();
  TokenShard b = std::move(a);
  EXPECT_EQ(a.size(), 0);  // NOLINT(bugprone-use-after-move): the moved-from shard is empty by contract
  expect_contents(b, tokens);
  ASSERT_TRUE(write_token_shard(dir.file("n.bin"), {1, 2}, 256).ok());
  auto other = TokenShard::open(dir.file("n.bin"));
  ASSERT_TRUE(other.ok());
  b = std::move(other).value();  // releases the first mapping
  expect_contents(b, {1, 2});
}

TEST(TokenShard, WriteRejectsTokensOutsideVocab) {
  TestDir dir;
  const std::string path = dir.file("bad.bin");
  for (const std::vector<int32_t>& tokens : {std::vector<int32_t>{1, 2, 256, 3}, std::vector<int32_t>{1, -1}}) {
    const absl::Status st = write_token_shard(path, tokens, 256);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find(path), absl::string_view::npos) << st;
    EXPECT_NE(st.message().find("outside the vocabulary"), absl::string_view::npos) << st;
  }
  EXPECT_EQ(write_token_shard(path, {0}, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// The bytes of a good 100-token uint16 shard, for the damage tests to mutate.
std::string good_shard_bytes(const TestDir& dir) {
  const std::string path = dir.file("good.bin");
  MEMTRAIN_CHECK_OK(write_token_shard(path, ramp(100, 256), 256));
  return read_bytes(path);
}

void set_u32(std::string& b, size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }
void set_u64(std::string& b, size_t off, uint64_t v) { std::memcpy(b.data() + off, &v, 8); }
void fix_header_checksum(std::string& b) { set_u64(b, 40, xxhash64(b.data(), 40)); }

struct BadShard {
  const char* name;
  std::function<void(std::string&)> damage;  // null: leave the file missing
  absl::StatusCode code;
  const char* reason;
};

// Names the case in failure messages instead of dumping the struct's bytes.
void PrintTo(const BadShard& c, std::ostream* os) { *os << c.name; }

class BadShardTest : public ::testing::TestWithParam<BadShard> {};

TEST_P(BadShardTest, IsRefusedWithPathAndReason) {
  const BadShard& c = GetParam();
  TestDir dir;
  std::string bytes = good_shard_bytes(dir);
  const std::string path = dir.file(std::string(c.name) + ".bin");
  if (c.damage) {
    c.damage(bytes);
    write_bytes(path, bytes);
  }
  auto shard = TokenShard::open(path);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), c.code) << shard.status();
  EXPECT_NE(shard.status().message().find(path), absl::string_view::npos) << shard.status();
  EXPECT_NE(shard.status().message().find(c.reason), absl::string_view::npos) << shard.status();
}

INSTANTIATE_TEST_SUITE_P(
    Damage, BadShardTest,
    ::testing::Values(
        BadShard{"missing", nullptr, absl::StatusCode::kNotFound, "No such file"},
        BadShard{"empty", [](std::string& b) { b.clear(); }, absl::StatusCode::kDataLoss, "shorter than the 64-byte"},
        BadShard{"half_header", [](std::string& b) { b.resize(40); }, absl::StatusCode::kDataLoss, "40 bytes"},
        BadShard{"bad_magic", [](std::string& b) { b[1] = 'X'; }, absl::StatusCode::kInvalidArgument, "bad magic"},
        BadShard{"version2", [](std::string& b) { set_u32(b, 8, 2); fix_header_checksum(b); },
                 absl::StatusCode::kInvalidArgument, "unsupported format version 2"},
        BadShard{"dtype3", [](std::string& b) { set_u32(b, 12, 3); fix_header_checksum(b); },
                 absl::StatusCode::kInvalidArgument, "unsupported token dtype code 3"},
        BadShard{"vocab0", [](std::string& b) { set_u64(b, 24, 0); fix_header_checksum(b); },
                 absl::StatusCode::kInvalidArgument, "vocab size 0"},
        BadShard{"truncated", [](std::string& b) { b.pop_back(); }, absl::StatusCode::kDataLoss, "(truncated)"},
        BadShard{"trailing", [](std::string& b) { b += "xy"; }, absl::StatusCode::kDataLoss, "trailing bytes"},
        BadShard{"token_byte", [](std::string& b) { b[64 + 77] ^= 0x04; }, absl::StatusCode::kDataLoss,
                 "token checksum mismatch"},
        BadShard{"header_field", [](std::string& b) { set_u64(b, 24, 255); }, absl::StatusCode::kDataLoss,
                 "header checksum mismatch"},
        BadShard{"padding", [](std::string& b) { b[60] = 1; }, absl::StatusCode::kDataLoss, "nonzero header padding"}),
    [](const ::testing::TestParamInfo<BadShard>& info) { return std::string(info.param.name); });

TEST(TokenShard, DirectoryIsNotAShard) {
  TestDir dir;
  auto shard = TokenShard::open(dir.path());
  ASSERT_FALSE(shard.ok());
  EXPECT_NE(shard.status().message().find(dir.path()), absl::string_view::npos);
  EXPECT_NE(shard.status().message().find("not a regular file"), absl::string_view::npos);
}

// Every single-byte corruption of the header, and of ~200 spread body positions, must be caught by open().
TEST(TokenShard, ByteFlipSweepIsAlwaysDetected) {
  TestDir dir;
  const std::string path = dir.file("flip.bin");
  MEMTRAIN_CHECK_OK(write_token_shard(path, ramp(5000, 256), 256));
  const std::string good = read_bytes(path);
  ASSERT_TRUE(TokenShard::open(path).ok());
  std::vector<size_t> positions;
  for (size_t i = 0; i < 64; ++i) positions.push_back(i);
  const size_t body = good.size() - 64;
  for (size_t k = 0; k < 200; ++k) positions.push_back(64 + (k * 2654435761u + 17) % body);
  positions.push_back(good.size() - 1);
  const std::string flipped = dir.file("flipped.bin");
  for (size_t pos : positions) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string bytes = good;
      bytes[pos] = static_cast<char>(bytes[pos] ^ mask);
      write_bytes(flipped, bytes);
      auto shard = TokenShard::open(flipped);
      ASSERT_FALSE(shard.ok()) << "flip of byte " << pos << " with mask " << int(mask) << " went undetected";
      ASSERT_NE(shard.status().message().find(flipped), absl::string_view::npos) << shard.status();
    }
  }
}

// 100%: EVERY byte of small shards (header and body, both token widths) flipped with three masks; each flip must
// be refused with an error naming the file. The count is printed for the Reliability table.
TEST(TokenShard, EveryByteFlipIsDetected) {
  TestDir dir;
  struct Shard { std::string name; int64_t tokens, vocab; };
  // 2-byte tokens (vocab 256) and 4-byte tokens (a vocabulary past 65536); small, so the sweep takes ~1 s.
  const std::vector<Shard> shards = {{"u16.bin", 100, 256}, {"u32.bin", 40, 100000}};
  const std::string flipped = dir.file("flipped.bin");
  size_t tried = 0, detected = 0, bytes_total = 0;
  for (const Shard& sh : shards) {
    const std::string path = dir.file(sh.name);
    MEMTRAIN_CHECK_OK(write_token_shard(path, ramp(sh.tokens, sh.vocab), sh.vocab));
    const std::string good = read_bytes(path);
    ASSERT_TRUE(TokenShard::open(path).ok());
    bytes_total += good.size();
    for (size_t pos = 0; pos < good.size(); ++pos) {
      for (unsigned char mask : {0x01, 0x80, 0xFF}) {
        std::string bytes = good;
        bytes[pos] = static_cast<char>(bytes[pos] ^ mask);
        write_bytes(flipped, bytes);
        ++tried;
        auto shard = TokenShard::open(flipped);
        if (!shard.ok() && shard.status().message().find(flipped) != absl::string_view::npos) {
          ++detected;
        } else {
          ADD_FAILURE() << sh.name << ": flip of byte " << pos << " with mask " << int(mask) << ": "
                        << (shard.ok() ? "accepted" : shard.status().ToString());
        }
      }
    }
  }
  std::printf("TokenShard.EveryByteFlipIsDetected: %zu bytes in %zu shards, %zu flips tried, %zu detected\n",
              bytes_total, shards.size(), tried, detected);
  EXPECT_EQ(detected, tried);
  EXPECT_EQ(tried, 3 * bytes_total);
}

// A failed write never touches the good file already under the final name.
TEST(TokenShard, FailedWriteLeavesPreviousFileIntact) {
  TestDir dir;
  const std::string path = dir.file("train.bin");
  const std::vector<int32_t> old_tokens = ramp(50, 256);
  ASSERT_TRUE(write_token_shard(path, old_tokens, 256).ok());
  const std::string old_bytes = read_bytes(path);

  // The temporary name is taken by a directory: creating it fails before anything is written.
  std::filesystem::create_directory(path + ".tmp");
  const absl::Status st = write_token_shard(path, ramp(80, 256), 256);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path + ".tmp"), absl::string_view::npos) << st;
  EXPECT_NE(st.message().find("cannot create"), absl::string_view::npos) << st;
  EXPECT_TRUE(std::filesystem::is_directory(path + ".tmp"));  // not ours to delete
  EXPECT_EQ(read_bytes(path), old_bytes);
  auto shard = TokenShard::open(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  expect_contents(*shard, old_tokens);
  std::filesystem::remove(path + ".tmp");

  // A successful overwrite replaces the contents and leaves no temporary behind.
  const std::vector<int32_t> new_tokens = ramp(80, 256);
  ASSERT_TRUE(write_token_shard(path, new_tokens, 256).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto reopened = TokenShard::open(path);
  ASSERT_TRUE(reopened.ok());
  expect_contents(*reopened, new_tokens);
}

TEST(TokenShard, FailedRenameRemovesTemporary) {
  TestDir dir;
  const std::string path = dir.file("occupied");
  std::filesystem::create_directory(path);
  write_bytes(path + "/keep", "x");  // a non-empty directory cannot be replaced by rename()
  const absl::Status st = write_token_shard(path, {1, 2, 3}, 256);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path), absl::string_view::npos) << st;
  EXPECT_NE(st.message().find("cannot rename"), absl::string_view::npos) << st;
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(read_bytes(path + "/keep"), "x");
}

TEST(TokenShard, ReadOnlyDirectoryFailsCleanly) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  TestDir dir;
  const std::string sub = dir.file("ro");
  std::filesystem::create_directory(sub);
  const std::string path = sub + "/train.bin";
  ASSERT_TRUE(write_token_shard(path, {4, 5}, 256).ok());
  ::chmod(sub.c_str(), 0555);
  const absl::Status st = write_token_shard(path, {6, 7, 8}, 256);
  ::chmod(sub.c_str(), 0755);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied) << st;
  auto shard = TokenShard::open(path);
  ASSERT_TRUE(shard.ok());
  expect_contents(*shard, {4, 5});
}

}  // namespace
}  // namespace memtrain
