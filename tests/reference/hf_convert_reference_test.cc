// memtrain convert against Hugging Face's own tools (tests/reference/hf_model.py, run by the venv python that
// scripts/setup.sh makes with the `safetensors` package; skipped, saying so, where it is missing):
// - directories written by safetensors' save_file (bf16, sharded with an index, GPT-2 under the original release's
//   names with its mask buffers and a tied lm_head copy; LLaMA with grouped-query attention) import and export
//   back to the same tensors bit for bit, in sharded files that safetensors reads;
// - weights exported from memtrain load with safetensors and give, in torch_reference.py's PyTorch models, the
//   logits memtrain computes, within 1e-5 relative (both fp32; they differ only in summation order, as in
//   torch_reference_test, measured 4e-7 and 5e-7; a LLaMA exported with twice its rope_theta gives 4e-2).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "checkpoint/hf_directory.h"
#include "trainer/checkpoint_file.h"
#include "trainer/hf_convert.h"
#include "tests/reference/pyref.h"
#include "trainer/session.h"

namespace memtrain {
namespace {

namespace fs = std::filesystem;

using testing::reference_python;

int run_script(const std::string& args) { return testing::run_reference_script("hf_model.py", args); }

class HfConvertReference : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!testing::reference_python_has("safetensors, torch"))
      GTEST_SKIP() << reference_python() << " cannot import safetensors: run scripts/setup.sh";
    dir_ = ::testing::TempDir() + "memtrain_hf_" + GetParam() + "_" + std::to_string(getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string dir_;
};

std::map<std::string, checkpoint::NamedTensor> by_name(std::vector<checkpoint::NamedTensor> tensors) {
  std::map<std::string, checkpoint::NamedTensor> out;
  for (auto& t : tensors) out.emplace(t.name, std::move(t));
  return out;
}

TEST_P(HfConvertReference, SafetensorsDirectoriesRoundTripBitForBit) {
  const std::string hf = dir_ + "/hf", out = dir_ + "/run", back = dir_ + "/back";
  ASSERT_EQ(run_script("make " + GetParam() + " " + hf + " 7"), 0);
  auto imported = trainer::import_hf(hf, out);
  ASSERT_TRUE(imported.ok()) << imported.status();
  auto exported = trainer::export_hf(out, back, std::nullopt, /*max_shard_bytes=*/8192);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_TRUE(fs::exists(back + "/model.safetensors.index.json")) << "8 KiB shards";

  auto original = checkpoint::read_hf_directory(hf, MemCategory::kWorkspace);
  auto copy = checkpoint::read_hf_directory(back, MemCategory::kWorkspace);
  ASSERT_TRUE(original.ok() && copy.ok());
  auto written = by_name(std::move(copy->tensors));
  int64_t compared = 0;
  for (const checkpoint::NamedTensor& t : original->tensors) {
    std::string name = t.name;
    if (GetParam() == "gpt2") {
      if (name.find(".attn.bias") != std::string::npos || name == "lm_head.weight") continue;  // buffers, tied copy
      name = "transformer." + name;
    }
    SCOPED_TRACE(name);
    auto it = written.find(name);
    ASSERT_NE(it, written.end());
    const Tensor& w = it->second.tensor;
    ASSERT_EQ(w.dtype(), DType::kBF16);
    ASSERT_EQ(w.shape(), t.tensor.shape());
    EXPECT_EQ(std::memcmp(w.raw(), t.tensor.raw(), w.nbytes()), 0);
    written.erase(it);
    ++compared;
  }
  EXPECT_TRUE(written.empty()) << written.size() << " tensors more than the original";
  EXPECT_EQ(compared, imported->tensors);

  // The same model as Hugging Face's files run it: the logits of both directories are the same bits.
  std::ofstream(dir_ + "/tokens.json") << "[[1, 5, 9, 2, 7, 3], [4, 4, 8, 0, 1, 6]]";
  ASSERT_EQ(run_script("logits " + hf + " " + dir_ + "/tokens.json " + dir_ + "/a.json"), 0);
  ASSERT_EQ(run_script("logits " + back + " " + dir_ + "/tokens.json " + dir_ + "/b.json"), 0);
  std::stringstream a, b;
  a << std::ifstream(dir_ + "/a.json").rdbuf();
  b << std::ifstream(dir_ + "/b.json").rdbuf();
  EXPECT_EQ(a.str(), b.str());
}

TEST_P(HfConvertReference, ExportedWeightsGiveMemtrainsLogitsInPyTorch) {
  trainer::Config cfg;
  cfg.model.arch = GetParam();
  cfg.model.vocab_size = 80;
  cfg.model.n_layer = 2;
  cfg.model.n_head = 4;
  cfg.model.n_kv_head = GetParam() == "llama" ? 2 : 0;
  cfg.model.n_embd = 32;
  cfg.model.block_size = 16;
  cfg.model.init_std = 0.2;  // logits well away from zero
  cfg.output.dir = dir_ + "/run";
  cfg.train.seed = 3;
  auto bundle = trainer::build_model(cfg);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  std::vector<checkpoint::NamedTensor> params;
  for (const auto& p : (*bundle)->params.all()) params.push_back({p->name, p->value});
  ASSERT_TRUE(trainer::write_weights_checkpoint(cfg, params, "").ok());
  ASSERT_TRUE(trainer::export_hf(cfg.output.dir, dir_ + "/hf", DType::kF32, 4096).ok());

  const std::vector<std::vector<int>> tokens = {{3, 14, 15, 9, 26, 5, 35, 8}, {79, 0, 2, 71, 8, 28, 18, 28}};
  std::ofstream(dir_ + "/tokens.json") << nlohmann::json(tokens).dump();
  ASSERT_EQ(run_script("logits " + dir_ + "/hf " + dir_ + "/tokens.json " + dir_ + "/torch.json"), 0);
  std::ifstream in(dir_ + "/torch.json");
  const nlohmann::json torch = nlohmann::json::parse(in);

  auto batch = Tensor::empty({2, 8}, DType::kI32, MemCategory::kActivations);
  ASSERT_TRUE(batch.ok());
  for (int b = 0; b < 2; ++b) std::copy(tokens[b].begin(), tokens[b].end(), batch->i32() + 8 * b);
  auto logits = (*bundle)->model->last_logits(*batch);
  ASSERT_TRUE(logits.ok()) << logits.status();
  double num = 0, den = 0;
  for (int b = 0; b < 2; ++b) {
    for (int v = 0; v < 80; ++v) {
      const double ref = torch[b][v].get<double>(), d = logits->f32()[80 * b + v] - ref;
      num += d * d;
      den += ref * ref;
    }
  }
  std::printf("relative L2 of the logits: %.3g\n", std::sqrt(num / den));
  EXPECT_LT(std::sqrt(num / den), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Arch, HfConvertReference, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace memtrain
