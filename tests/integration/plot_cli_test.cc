// `memtrain plot RUN_DIR` on the metrics.jsonl of a real run: a PNG of the requested size (its IHDR chunk says so)
// at the default or the given path; bad arguments and runs without metrics are exit 2 with the reason.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "tests/integration/cli.h"

namespace memtrain {
namespace {

// The width and height a PNG's IHDR chunk declares (big-endian, after the 8-byte signature and the chunk header).
std::pair<uint32_t, uint32_t> png_size(const std::string& bytes) {
  auto be32 = [&](size_t at) {
    return static_cast<uint32_t>(static_cast<uint8_t>(bytes[at])) << 24 |
           static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 1])) << 16 |
           static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 2])) << 8 | static_cast<uint8_t>(bytes[at + 3]);
  };
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 || bytes.compare(12, 4, "IHDR") != 0)
    return {0, 0};
  return {be32(16), be32(20)};
}

TEST(PlotCli, DrawsARunsMetricsIntoAPngOfTheRequestedSize) {
  const std::string dir = ::testing::TempDir() + "memtrain_plot_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto train = testing::run_memtrain(
      "train configs/default.toml --set model.n_layer=2 --set model.n_embd=64 --set train.max_steps=30"
      " --set train.log_interval=5 --set train.eval_interval=10 --set train.eval_batches=2 --set output.samples=0"
      " --set output.dir=" + dir + "/run", dir);
  ASSERT_EQ(train.exit_code, 0) << train.err;
  auto plot = testing::run_memtrain("plot " + dir + "/run", dir);
  ASSERT_EQ(plot.exit_code, 0) << plot.err;
  EXPECT_NE(plot.out.find("wrote " + dir + "/run/metrics.png (1000 x 700)"), std::string::npos) << plot.out;
  EXPECT_EQ(png_size(testing::slurp(dir + "/run/metrics.png")), std::make_pair(1000u, 700u));
  auto sized = testing::run_memtrain("plot " + dir + "/run --out " + dir + "/small.png --width 480 --height 360", dir);
  ASSERT_EQ(sized.exit_code, 0) << sized.err;
  EXPECT_EQ(png_size(testing::slurp(dir + "/small.png")), std::make_pair(480u, 360u));
  for (const auto& [args, reason] : std::vector<std::pair<std::string, std::string>>{
           {"plot " + dir, "metrics.jsonl: no such file"},
           {"plot", "plot: needs a RUN_DIR"},
           {"plot " + dir + "/run --width 50", "--width: 50 pixels"},
           {"plot " + dir + "/run --height tall", "--height: not an integer: 'tall'"},
           {"plot " + dir + "/run --set a.b=1", "plot: takes no --set"}}) {
    auto r = testing::run_memtrain(args, dir);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.err.find(reason), std::string::npos) << args << ": " << r.err;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain
