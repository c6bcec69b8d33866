// Regression tests for what fuzzing (tests/fuzz) found in the safetensors reader and the checksum under it. Each
// crashing input also sits in tests/fuzz/corpus/fuzz_safetensors/ so the fuzzer replays it on every run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "core/checksum.h"

namespace memtrain::checkpoint {
namespace {

// Found by fuzz_safetensors (UBSan: "applying non-zero offset 8 to null pointer" in core/checksum.cc): a file with
// no tensors hashes an empty vector, whose data() is null, and xxhash64 computed null + 8. Fixed in xxhash64 by
// comparing the bytes left instead of forming p + 8.
TEST(FuzzRegression, Xxhash64OfNullEmptyInput) {
  EXPECT_EQ(xxhash64(nullptr, 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(xxhash64(nullptr, 0, 1), xxhash64("", 0, 1));
  const std::vector<uint64_t> none;
  EXPECT_EQ(xxhash64(none.data(), 0), 0xEF46DB3751D8E999ull);
}

// The same crash through the file format: a safetensors file with no tensors (written by memtrain, so it carries
// the data checksum over zero tensors) writes and reads back cleanly.
TEST(FuzzRegression, SafetensorsWithoutTensors) {
  const std::string dir = ::testing::TempDir() + "memtrain_st_fuzz_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/empty.safetensors";
  ASSERT_TRUE(write_safetensors(path, {}, {{"format", "pt"}}).ok());
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path, MemCategory::kWorkspace);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->tensors.empty());
  EXPECT_EQ(file->metadata.at("format"), "pt");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain::checkpoint
