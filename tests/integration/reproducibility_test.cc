// Same seed, same config: the loss curve is bitwise identical across runs and across kernel thread counts.
// (Gradient accumulation is checked one step at a time in tests/unit/model/model_test.cc.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/thread_pool.h"
#include "trainer/config.h"
#include "trainer/train_loop.h"

namespace memtrain {
namespace {

// A few KB of varied text, so the run needs no installed corpus.
std::string write_corpus(const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::ofstream f(dir + "/text.txt");
  for (int i = 0; i < 400; ++i) f << "line " << i << ": the quick brown fox " << (i * 7919 % 1000) << " jumps.\n";
  return dir + "/text.txt";
}

trainer::Config tiny_config(const std::string& dir, const std::string& arch, int threads) {
  const std::string text = write_corpus(dir + "/corpus");
  const std::string toml = "[model]\narch = \"" + arch + "\"\nn_layer = 2\nn_head = 4\nn_kv_head = " +
                           (arch == "llama" ? "2" : "0") + "\nn_embd = 32\nblock_size = 32\n"
                           "[data]\ntext = [\"" + text + "\"]\n"
                           "[train]\nmax_steps = 20\nbatch_size = 4\nlog_interval = 5\neval_interval = 0\n"
                           "eval_batches = 2\nthreads = " + std::to_string(threads) + "\n"
                           "[optim]\nwarmup_steps = 5\n"
                           "[output]\ndir = \"" + dir + "/out\"\nsave_weights = false\nsamples = 0\n";
  auto cfg = trainer::parse_config(toml, "test.toml", {});
  MEMTRAIN_CHECK_OK(cfg.status());
  return *cfg;
}

class Reproducibility : public ::testing::TestWithParam<std::string> {};

TEST_P(Reproducibility, SameSeedGivesBitwiseIdenticalCurvesWithOneAndTwoThreads) {
  const std::string dir = ::testing::TempDir() + "memtrain_repro_" + std::to_string(getpid());
  std::vector<std::vector<double>> curves;
  for (int threads : {1, 2, 2}) {
    auto r = trainer::run_training(tiny_config(dir, GetParam(), threads), /*quiet=*/true);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->losses.size(), 20u);
    curves.push_back(r->losses);
  }
  ThreadPool::set_global_threads(2);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(curves[0][i], curves[1][i]) << "step " << i << ": 1 vs 2 threads";
    EXPECT_EQ(curves[1][i], curves[2][i]) << "step " << i << ": two runs with 2 threads";
  }
  EXPECT_LT(curves[0].back(), curves[0].front());  // it does train
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Archs, Reproducibility, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace memtrain
