// safetensors: round trip, the format's own rules, and corruption of the data section caught by the checksum.
#include "checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/file_io.h"

namespace memtrain::checkpoint {
namespace {

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_st_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    a_ = *Tensor::empty({3, 5}, DType::kF32, MemCategory::kWorkspace);
    b_ = *Tensor::empty({7}, DType::kI32, MemCategory::kWorkspace);
    for (int i = 0; i < 15; ++i) a_.f32()[i] = 0.25f * i - 1;
    for (int i = 0; i < 7; ++i) b_.i32()[i] = i * i;
    path_ = dir_ + "/w.safetensors";
    MEMTRAIN_CHECK_OK(write_safetensors(path_, {{"a.weight", a_}, {"b", b_}}, {{"format", "pt"}}));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string bytes() { return *read_file(path_); }
  void put(const std::string& s) { MEMTRAIN_CHECK_OK(write_file_atomically(path_, {s})); }
  std::string dir_, path_;
  Tensor a_, b_;
};

TEST_F(Safetensors, RoundTrip) {
  auto f = read_safetensors(path_, MemCategory::kWorkspace);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors.size(), 2u);
  for (const auto& t : f->tensors) {
    const Tensor& want = t.name == "a.weight" ? a_ : b_;
    EXPECT_EQ(t.tensor.shape(), want.shape());
    EXPECT_EQ(t.tensor.dtype(), want.dtype());
    EXPECT_EQ(std::memcmp(t.tensor.raw(), want.raw(), want.nbytes()), 0);
  }
  EXPECT_EQ(f->metadata.at("format"), "pt");
}

TEST_F(Safetensors, HeaderIsStandard) {
  // Readers other than ours: 8-byte little-endian length, JSON, data aligned to 8.
  const std::string s = bytes();
  uint64_t n = 0;
  std::memcpy(&n, s.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(s[8], '{');
  EXPECT_EQ(s.size(), 8 + n + 15 * 4 + 7 * 4);
}

TEST_F(Safetensors, EveryDataByteFlipIsDetected) {
  const std::string good = bytes();
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  for (size_t i = 8 + n; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    put(bad);
    auto f = read_safetensors(path_, MemCategory::kWorkspace);
    ASSERT_FALSE(f.ok()) << "flip at " << i;
    EXPECT_NE(f.status().message().find("w.safetensors: checksum mismatch"), absl::string_view::npos);
  }
}

TEST_F(Safetensors, MalformedFilesNameThePathAndReason) {
  const std::string good = bytes();
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  struct Case { std::string name, content, reason; };
  std::string huge_len = good;
  huge_len[7] = 0x7f;
  std::string not_json = good;
  not_json[8] = '[';
  const std::vector<Case> cases = {
      {"empty", "", "too short"},
      {"short", good.substr(0, 5), "too short"},
      {"header past end", huge_len, "exceeds the file"},
      {"truncated data", good.substr(0, good.size() - 4), "data_offsets"},
      {"extra data", good + "abcd", "tensors cover"},
      {"not an object", not_json, "JSON"},
  };
  for (const Case& c : cases) {
    put(c.content);
    auto f = read_safetensors(path_, MemCategory::kWorkspace);
    ASSERT_FALSE(f.ok()) << c.name;
    EXPECT_NE(f.status().message().find(path_), absl::string_view::npos) << c.name << ": " << f.status();
    EXPECT_NE(f.status().message().find(c.reason), absl::string_view::npos) << c.name << ": " << f.status();
  }
  EXPECT_EQ(read_safetensors(dir_ + "/missing", MemCategory::kWorkspace).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(Safetensors, OverlappingOffsetsAreRejected) {
  auto hdr = [](const std::string& json) {
    std::string s(8, '\0');
    const uint64_t n = json.size();
    std::memcpy(s.data(), &n, 8);
    return s + json;
  };
  put(hdr(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})") +
      std::string(8, '\0'));
  auto f = read_safetensors(path_, MemCategory::kWorkspace);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("overlaps"), absl::string_view::npos) << f.status();
  put(hdr(R"({"x":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})") + std::string(4, '\0'));
  EXPECT_NE(read_safetensors(path_, MemCategory::kWorkspace).status().message().find("unsupported dtype"),
            absl::string_view::npos);
}

}  // namespace
}  // namespace memtrain::checkpoint
