// Every rank writes its own part of the same HDF5 file over MPI-IO, as checkpoints do: column blocks of a matrix
// (tensor-parallel parts), contiguous pieces of a vector (ZeRO shards) and a dataset some ranks hold nothing of;
// then every rank reads another rank's part and the whole tensors back, equal to the values computed from each
// element's index, and the file reads the same from one process without MPI-IO.
#include <gtest/gtest.h>
#include <mpi.h>

#include <vector>

#include "checkpoint/hdf5_file.h"
#include "tests/mpi/training_fixture.h"

namespace memtrain {
namespace {
using checkpoint::GlobalRun;
using checkpoint::Hdf5File;
using parallel::testing::shared_dir;
using parallel::testing::world;

float value_at(int64_t i) { return 3.0f + 0.5f * static_cast<float>(i); }

std::vector<float> values_of(const std::vector<GlobalRun>& runs) {
  std::vector<float> v;
  for (const GlobalRun& r : runs)
    for (int64_t i = 0; i < r.n; ++i) v.push_back(value_at(r.global + i));
  return v;
}

// Rank r's columns of a rows x cols matrix (uneven: the first ranks one more), one run per row.
std::vector<GlobalRun> columns_of(int r, int p, int64_t rows, int64_t cols) {
  const int64_t base = cols / p, extra = cols % p;
  const int64_t c0 = r * base + std::min<int64_t>(r, extra), c1 = c0 + base + (r < extra ? 1 : 0);
  std::vector<GlobalRun> runs;
  for (int64_t row = 0; row < rows; ++row) runs.push_back({row * cols + c0, c1 - c0});
  return runs;
}

TEST(Hdf5File, RanksWriteTheirPartsAndReadAnyPartBack) {
  const int r = world().rank(), p = world().size();
  const std::string path = shared_dir() + "/parts.h5";
  const int64_t rows = 24, cols = 2 * p + 3, n = 1000;
  const std::vector<GlobalRun> mine = columns_of(r, p, rows, cols);
  const std::vector<GlobalRun> piece = {{n * r / p, n * (r + 1) / p - n * r / p}};
  const std::vector<GlobalRun> first_only = r == 0 ? std::vector<GlobalRun>{{0, 50}} : std::vector<GlobalRun>{};
  {
    auto f = Hdf5File::create(path, MPI_COMM_WORLD);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE((*f)->write("params/w", {rows, cols}, DType::kF32, mine, values_of(mine).data()).ok());
    ASSERT_TRUE((*f)->write("optim/v", {n}, DType::kF32, piece, values_of(piece).data()).ok());
    ASSERT_TRUE((*f)->write("state/rng", {50}, DType::kF32, first_only, values_of(first_only).data()).ok());
    ASSERT_TRUE((*f)->set_attribute("manifest", "{}").ok());
    ASSERT_TRUE((*f)->close().ok());
  }
  {
    auto f = Hdf5File::open(path, MPI_COMM_WORLD);
    ASSERT_TRUE(f.ok()) << f.status();
    const std::vector<GlobalRun> other = columns_of((r + 1) % p, p, rows, cols);
    std::vector<float> got(values_of(other).size());
    ASSERT_TRUE((*f)->read("params/w", {rows, cols}, DType::kF32, other, got.data()).ok());
    EXPECT_EQ(got, values_of(other));
    const std::vector<GlobalRun> all = {{0, n}};
    std::vector<float> v(n);
    ASSERT_TRUE((*f)->read("optim/v", {n}, DType::kF32, all, v.data()).ok());
    EXPECT_EQ(v, values_of(all));
    ASSERT_TRUE((*f)->close().ok());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (r == 0) {  // the same file from one process
    auto f = Hdf5File::open(path, MPI_COMM_NULL);
    ASSERT_TRUE(f.ok()) << f.status();
    const std::vector<GlobalRun> all = {{0, rows * cols}};
    std::vector<float> w(rows * cols);
    ASSERT_TRUE((*f)->read("params/w", {rows, cols}, DType::kF32, all, w.data()).ok());
    EXPECT_EQ(w, values_of(all));
    const std::vector<GlobalRun> head = {{0, 50}};
    std::vector<float> s(50);
    ASSERT_TRUE((*f)->read("state/rng", {50}, DType::kF32, head, s.data()).ok());
    EXPECT_EQ(s, values_of(head));
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace memtrain
