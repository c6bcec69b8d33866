// Checkpoint files are plain HDF5: h5py (Debian's python3-h5py) reads every dataset with its shape, dtype, the
// Fletcher-32 filter and the values memtrain wrote (sums and first elements computed here in float64 from each
// element's index), and the root attribute. Skipped when /usr/bin/python3 cannot import h5py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/hdf5_file.h"

namespace memtrain::checkpoint {
namespace {

TEST(Hdf5H5py, ReadsEveryDatasetAsWritten) {
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no h5py";
  const std::string dir = ::testing::TempDir() + "memtrain_h5py_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/ck.h5";
  {
    auto f = Hdf5File::create(path, MPI_COMM_NULL);
    ASSERT_TRUE(f.ok()) << f.status();
    std::vector<float> w(6 * 7);
    for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * static_cast<float>(i) - 3.0f;
    const std::vector<GlobalRun> all_w = {{0, 42}};
    ASSERT_TRUE((*f)->write("params/transformer.h.0.attn.c_attn.weight", {6, 7}, DType::kF32, all_w, w.data()).ok());
    std::vector<uint8_t> codes(300);
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i % 256);
    const std::vector<GlobalRun> all_c = {{0, 300}};
    ASSERT_TRUE((*f)->write("optim/x/m_codes", {300}, DType::kU8, all_c, codes.data()).ok());
    ASSERT_TRUE((*f)->set_attribute("manifest", "{\"format\": 1}").ok());
    ASSERT_TRUE((*f)->close().ok());
  }
  // float64 sums: w = 0.5 i - 3 over 42 elements; codes i % 256 over 300.
  double w_sum = 0, c_sum = 0;
  for (int i = 0; i < 42; ++i) w_sum += 0.5 * i - 3.0;
  for (int i = 0; i < 300; ++i) c_sum += i % 256;
  FILE* pipe = popen(("/usr/bin/python3 " MEMTRAIN_SOURCE_DIR "/tests/reference/hdf5_read.py " + path).c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  ASSERT_EQ(pclose(pipe), 0) << out;
  std::istringstream lines(out);
  std::string name, shape, dtype;
  int fletcher = 0;
  double sum = 0, first = 0;
  ASSERT_TRUE(lines >> name >> shape >> dtype >> fletcher >> sum >> first) << out;
  EXPECT_EQ(name, "optim/x/m_codes");
  EXPECT_EQ(shape, "300");
  EXPECT_EQ(dtype, "uint8");
  EXPECT_EQ(fletcher, 1);
  EXPECT_EQ(sum, c_sum);
  ASSERT_TRUE(lines >> name >> shape >> dtype >> fletcher >> sum >> first) << out;
  EXPECT_EQ(name, "params/transformer.h.0.attn.c_attn.weight");
  EXPECT_EQ(shape, "6x7");
  EXPECT_EQ(dtype, "float32");
  EXPECT_EQ(fletcher, 1);
  EXPECT_EQ(sum, w_sum);
  EXPECT_EQ(first, -3.0);
  std::string attr, manifest;
  ASSERT_TRUE(lines >> attr >> std::ws && std::getline(lines, manifest)) << out;
  EXPECT_EQ(manifest, "{\"format\": 1}");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain::checkpoint
