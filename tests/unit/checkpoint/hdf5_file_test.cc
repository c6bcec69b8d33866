// One process writing and reading an HDF5 checkpoint file: a 2-D tensor written from runs that split it the way
// tensor and ZeRO parallelism do reads back, in other runs, as the values computed from each element's index; a
// flipped byte in a dataset's data fails the read naming the dataset; a missing dataset, a wrong shape or dtype is
// an error naming it; attributes round-trip.
#include "checkpoint/hdf5_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace memtrain::checkpoint {
namespace {

float value_at(int64_t i) { return 1000.0f + 0.25f * static_cast<float>(i); }  // exact in fp32 here

// Columns [c0, c1) of every row of a rows x cols tensor: a tensor-parallel part.
std::vector<GlobalRun> column_block(int64_t rows, int64_t cols, int64_t c0, int64_t c1) {
  std::vector<GlobalRun> runs;
  for (int64_t r = 0; r < rows; ++r) runs.push_back({r * cols + c0, c1 - c0});
  return runs;
}

std::vector<float> values_of(std::span<const GlobalRun> runs) {
  std::vector<float> v;
  for (const GlobalRun& r : runs)
    for (int64_t i = 0; i < r.n; ++i) v.push_back(value_at(r.global + i));
  return v;
}

class Hdf5FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_hdf5_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(Hdf5FileTest, RunsWrittenAndReadInAnySplitRoundTrip) {
  const std::string path = dir_ + "/ck.h5";
  const int64_t rows = 37, cols = 53;
  {
    auto f = Hdf5File::create(path, MPI_COMM_NULL);
    ASSERT_TRUE(f.ok()) << f.status();
    // Runs that cross rows: a piece starting mid-row, whole rows, a piece ending mid-row, then the rest.
    const std::vector<GlobalRun> runs = {{0, 20}, {20, 3 * cols + 7}, {27 + 3 * cols, rows * cols - 27 - 3 * cols}};
    const std::vector<float> data = values_of(runs);
    const absl::Status written = (*f)->write("params/w", {rows, cols}, DType::kF32, runs, data.data());
    ASSERT_TRUE(written.ok()) << written;
    const std::vector<GlobalRun> vec = {{0, 100}};
    ASSERT_TRUE((*f)->write("params/b", {100}, DType::kF32, vec, values_of(vec).data()).ok());
    ASSERT_TRUE((*f)->set_attribute("manifest", "{\"step\": 7}").ok());
    ASSERT_TRUE((*f)->close().ok());
  }
  auto f = Hdf5File::open(path, MPI_COMM_NULL);
  ASSERT_TRUE(f.ok()) << f.status();
  for (auto [c0, c1] : {std::pair<int64_t, int64_t>{0, 17}, {17, 53}, {5, 6}}) {
    const std::vector<GlobalRun> part = column_block(rows, cols, c0, c1);
    std::vector<float> got(static_cast<size_t>(rows * (c1 - c0)));
    ASSERT_TRUE((*f)->read("params/w", {rows, cols}, DType::kF32, part, got.data()).ok());
    EXPECT_EQ(got, values_of(part)) << c0 << ".." << c1;
  }
  const std::vector<GlobalRun> middle = {{30, 40}};
  std::vector<float> got(40);
  ASSERT_TRUE((*f)->read("params/b", {100}, DType::kF32, middle, got.data()).ok());
  EXPECT_EQ(got, values_of(middle));
  EXPECT_EQ((*f)->attribute("manifest").value_or(""), "{\"step\": 7}");
  EXPECT_TRUE((*f)->has("params/w"));
  EXPECT_FALSE((*f)->has("params/missing"));
  EXPECT_FALSE((*f)->has("nothing/here"));
}

TEST_F(Hdf5FileTest, MissingOrMismatchedDatasetsAreNamed) {
  const std::string path = dir_ + "/ck.h5";
  {
    auto f = Hdf5File::create(path, MPI_COMM_NULL);
    ASSERT_TRUE(f.ok());
    const std::vector<GlobalRun> all = {{0, 12}};
    ASSERT_TRUE((*f)->write("w", {3, 4}, DType::kF32, all, values_of(all).data()).ok());
    ASSERT_TRUE((*f)->close().ok());
  }
  auto f = Hdf5File::open(path, MPI_COMM_NULL);
  ASSERT_TRUE(f.ok());
  std::vector<float> buf(12);
  const std::vector<GlobalRun> all = {{0, 12}};
  const absl::Status missing = (*f)->read("v", {3, 4}, DType::kF32, all, buf.data());
  EXPECT_NE(missing.message().find("missing dataset 'v'"), std::string::npos) << missing;
  const absl::Status shape = (*f)->read("w", {4, 3}, DType::kF32, all, buf.data());
  EXPECT_NE(shape.message().find("'w'"), std::string::npos) << shape;
  const absl::Status dtype = (*f)->read("w", {3, 4}, DType::kI32, all, buf.data());
  EXPECT_FALSE(dtype.ok());
  EXPECT_FALSE(Hdf5File::open(dir_ + "/absent.h5", MPI_COMM_NULL).ok());
}

TEST_F(Hdf5FileTest, AFlippedByteFailsTheReadNamingTheDataset) {
  const std::string path = dir_ + "/ck.h5";
  const std::vector<GlobalRun> all = {{0, 4096}};
  {
    auto f = Hdf5File::create(path, MPI_COMM_NULL);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->write("opt/m", {64, 64}, DType::kF32, all, values_of(all).data()).ok());
    ASSERT_TRUE((*f)->close().ok());
  }
  // Find the data by its first values' bytes and flip one bit in the middle of it.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<float> head = values_of(std::vector<GlobalRun>{{0, 4}});
  const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(head.data()), 16));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 4096 * 2] ^= 0x10;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  auto f = Hdf5File::open(path, MPI_COMM_NULL);
  ASSERT_TRUE(f.ok());
  std::vector<float> got(4096);
  const absl::Status s = (*f)->read("opt/m", {64, 64}, DType::kF32, all, got.data());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("'opt/m'"), std::string::npos) << s;
}

// file_size_bound is what a save checks the disk for: the files must never be larger, from many tiny datasets (all
// overhead) to a few large ones of many chunks, in groups, with a large attribute.
TEST_F(Hdf5FileTest, FilesStayWithinTheirSizeBound) {
  struct Case {
    int datasets;
    Shape shape;
  };
  for (const Case& k : {Case{300, {3}}, Case{40, {7, 5}}, Case{3, {1500, 1100}}, Case{2, {3000001}},
                        Case{1, {5, 2000000}}}) {
    const std::string path = dir_ + "/bound.h5";
    const std::string attribute(20000, 'a');
    std::vector<StoredShape> shapes;
    {
      auto f = Hdf5File::create(path, MPI_COMM_NULL);
      ASSERT_TRUE(f.ok());
      std::vector<float> values(shape_numel(k.shape), 1.5f);
      const std::vector<GlobalRun> all = {{0, shape_numel(k.shape)}};
      for (int d = 0; d < k.datasets; ++d) {
        const std::string name = "optim/layer." + std::to_string(d) + ".weight/m";
        ASSERT_TRUE((*f)->write(name, k.shape, DType::kF32, all, values.data()).ok());
        shapes.push_back({k.shape, DType::kF32});
      }
      ASSERT_TRUE((*f)->set_attribute("manifest", attribute).ok());
      ASSERT_TRUE((*f)->close().ok());
    }
    const int64_t size = static_cast<int64_t>(std::filesystem::file_size(path));
    const int64_t bound = file_size_bound(shapes, static_cast<int64_t>(attribute.size()));
    EXPECT_LE(size, bound) << k.datasets << " datasets of " << shape_string(k.shape);
    std::printf("%d datasets of %s: %lld bytes, bound %lld\n", k.datasets, shape_string(k.shape).c_str(),
                static_cast<long long>(size), static_cast<long long>(bound));
  }
}

}  // namespace
}  // namespace memtrain::checkpoint
