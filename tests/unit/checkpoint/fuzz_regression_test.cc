// Regression tests for what fuzzing (tests/fuzz) found in the safetensors reader and the checksum under it. Each
// crashing input also sits in tests/fuzz/corpus/fuzz_safetensors/ so the fuzzer replays it on every run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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

// Writes `bytes` to a fresh file and reads it as safetensors.
absl::StatusOr<SafetensorsFile> read_bytes_as_safetensors(const std::string& bytes) {
  const std::string dir = ::testing::TempDir() + "memtrain_st_fuzz_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/input.safetensors";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  absl::StatusOr<SafetensorsFile> file = read_safetensors(path, MemCategory::kWorkspace);
  std::filesystem::remove_all(dir);
  return file;
}

// A safetensors file: 8-byte little-endian header length, the JSON header, the data.
std::string safetensors_bytes(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(static_cast<uint64_t>(json.size()) >> (8 * i));
  return s + json + data;
}

// Found by fuzz_safetensors (corpus file crash-shape-overflow.safetensors; UBSan: "signed integer overflow:
// 1099511627776 * 1099511627776" in shape_numel): the reader bounded each dimension and the running element count
// by 2^40, but the count was a uint64_t product that wrapped, 2^40 * 2^40 = 0 mod 2^64, so shape [2^40, 2^40] with
// no data passed as an empty tensor and Tensor::empty overflowed. The exact input, then the zero-dimension
// variants: the product of the nonzero dimensions is now checked before each multiply.
TEST(FuzzRegression, SafetensorsShapeProductWraps) {
  const unsigned char kInput[] = {
      0x50, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x7b, 0x22, 0x64,
      0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61,
      0x70, 0x65, 0x22, 0x3a, 0x5b, 0x31, 0x30, 0x39, 0x39, 0x35, 0x31, 0x31, 0x36, 0x32, 0x37, 0x37,
      0x37, 0x36, 0x2c, 0x31, 0x30, 0x39, 0x39, 0x35, 0x31, 0x31, 0x36, 0x32, 0x37, 0x37, 0x37, 0x36,
      0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22,
      0x3a, 0x5b, 0x30, 0x2c, 0x30, 0x5d, 0x7d, 0x7d, 0x61, 0x62, 0x63, 0x64,
  };
  absl::StatusOr<SafetensorsFile> file =
      read_bytes_as_safetensors(std::string(reinterpret_cast<const char*>(kInput), sizeof(kInput)));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("tensor 'a': bad shape"), std::string::npos) << file.status();

  for (const char* shape : {"[1099511627776,1099511627776,0]", "[0,1099511627776,1099511627776]",
                            "[1048576,1048576,2]", "[4294967296,4294967296,4294967296,4294967296]"}) {
    const std::string json = std::string(R"({"a":{"dtype":"U8","shape":)") + shape + R"(,"data_offsets":[0,0]}})";
    file = read_bytes_as_safetensors(safetensors_bytes(json, ""));
    ASSERT_FALSE(file.ok()) << shape;
    EXPECT_NE(file.status().message().find("bad shape"), std::string::npos) << shape << ": " << file.status();
  }
  // The bound itself still holds: 2^40 elements may be declared (here refused only because the data is missing),
  // and zero dimensions next to ordinary ones make an empty tensor.
  file = read_bytes_as_safetensors(
      safetensors_bytes(R"({"a":{"dtype":"U8","shape":[1048576,1048576],"data_offsets":[0,0]}})", ""));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("do not match its shape"), std::string::npos) << file.status();
  file = read_bytes_as_safetensors(
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3,0,5],"data_offsets":[0,0]}})", ""));
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors.size(), 1u);
  EXPECT_EQ(file->tensors[0].tensor.shape(), (Shape{3, 0, 5}));
}

}  // namespace
}  // namespace memtrain::checkpoint
