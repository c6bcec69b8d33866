// safetensors: round trip, the format's own rules, and corruption anywhere in the file (length prefix, header,
// padding, data) caught by the two checksums: Safetensors.EveryByteFlipIsDetected flips every byte with three masks.
#include "checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
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
  // Without the fsyncs of put(): the byte-flip sweep writes the file thousands of times.
  void put_fast(const std::string& s) {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    f.write(s.data(), static_cast<std::streamsize>(s.size()));
    ASSERT_TRUE(f.good());
  }
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

// The whole file: the 8-byte length prefix, the JSON header (tensor names, shapes, offsets, __metadata__ with both
// checksums), the padding spaces and the data. 100%: every single-byte change a mask makes must be rejected with
// an error naming the file; the count is printed for the Reliability table.
TEST_F(Safetensors, EveryByteFlipIsDetected) {
  const std::string good = bytes();
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  ASSERT_NE(good.find("memtrain_header_xxh64"), std::string::npos);
  ASSERT_GT(n, good.find_last_not_of(' ', 8 + n - 1) - 8 + 1) << "the sweep should cover padding too";
  size_t tried = 0, detected = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xff}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      put_fast(bad);
      ++tried;
      auto f = read_safetensors(path_, MemCategory::kWorkspace);
      if (!f.ok() && f.status().message().find(path_) != absl::string_view::npos) {
        ++detected;
      } else {
        ADD_FAILURE() << "flip 0x" << std::hex << int{mask} << std::dec << " at byte " << i << " of " << good.size()
                      << (i < 8 ? " (length)" : i < 8 + n ? " (header)" : " (data)") << ": "
                      << (f.ok() ? "accepted" : f.status().ToString());
      }
    }
  }
  std::printf("Safetensors.EveryByteFlipIsDetected: %zu bytes (8 length + %llu header + %zu data), %zu flips tried, "
              "%zu detected\n",
              good.size(), static_cast<unsigned long long>(n), good.size() - 8 - n, tried, detected);
  EXPECT_EQ(detected, tried);
  EXPECT_EQ(tried, 3 * good.size());
}

// Flips that keep the header valid JSON with consistent offsets: only the header checksum can catch them.
TEST_F(Safetensors, HeaderFlipsAreCaughtByTheHeaderChecksum) {
  const std::string good = bytes();
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  struct Case { std::string name, from, to; };
  const std::vector<Case> cases = {
      {"tensor name", "\"a.weight\"", "\"a.weighT\""},
      {"metadata value", "\"pt\"", "\"pT\""},
      {"shape", "[3,5]", "[5,3]"},
      {"padding", std::string(good.data() + 8 + n - 1, 1), "\t"},
  };
  for (const Case& c : cases) {
    std::string bad = good;
    const size_t at = c.name == "padding" ? 8 + n - 1 : bad.find(c.from);
    ASSERT_LT(at, 8 + n) << c.name;
    bad.replace(at, c.from.size(), c.to);
    put(bad);
    auto f = read_safetensors(path_, MemCategory::kWorkspace);
    ASSERT_FALSE(f.ok()) << c.name;
    EXPECT_NE(f.status().message().find("w.safetensors: header checksum mismatch"), absl::string_view::npos)
        << c.name << ": " << f.status();
  }
  // A damaged key name leaves the data checksum without its header checksum.
  std::string bad = good;
  bad[bad.find("memtrain_header_xxh64") + 9] = 'H';
  put(bad);
  EXPECT_NE(read_safetensors(path_, MemCategory::kWorkspace).status().message().find("header checksum missing"),
            absl::string_view::npos);
}

// Files written by other tools (no memtrain checksums, no __metadata__ or other metadata) load unchecked.
TEST_F(Safetensors, FilesWithoutChecksumsLoad) {
  for (const std::string& json : {std::string(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})"),
                                 std::string(R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],)"
                                             R"("data_offsets":[0,8]}})")}) {
    std::string s(8, '\0');
    const uint64_t n = json.size();
    std::memcpy(s.data(), &n, 8);
    const float v[2] = {1.5f, -2.0f};
    put(s + json + std::string(reinterpret_cast<const char*>(v), sizeof(v)));
    auto f = read_safetensors(path_, MemCategory::kWorkspace);
    ASSERT_TRUE(f.ok()) << json << ": " << f.status();
    ASSERT_EQ(f->tensors.size(), 1u);
    EXPECT_EQ(f->tensors[0].tensor.f32()[1], -2.0f);
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
      {"not an object", not_json, "header checksum mismatch"},  // caught on the raw bytes, before parsing
      {"not an object, unchecked", std::string("\x02\0\0\0\0\0\0\0[]", 10), "not a JSON object"},
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
