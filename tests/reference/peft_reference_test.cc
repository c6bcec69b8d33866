// LoRA adapters exported in PEFT's layout against PyTorch (tests/reference/hf_model.py peft_logits, run by the
// venv python that scripts/setup.sh makes; skipped, saying so, where safetensors is missing): the base model is a
// Hugging Face directory written by safetensors' save_file (bf16, sharded), memtrain fine-tunes it through
// model.from_hf with adapters on every projection (set to random values, as after training), and PyTorch loads
// the base and adapter_model.safetensors, checks adapter_config.json as peft reads it, applies the adapters as
// peft's LoraLayer does (unmerged) and must give memtrain's last-position logits within 1e-4 relative (‖a−b‖/‖b‖,
// the bound; both are fp32 and differ only in summation order). The merged export
// (convert --merge-adapter) gives the same logits through the plain model, the adapter read back into memtrain
// gives the same bits, and the adapters change the logits by far more than the bound (without them PyTorch's
// logits are off).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "tests/reference/pyref.h"
#include "trainer/config.h"
#include "trainer/peft_adapter.h"
#include "trainer/session.h"

namespace memtrain {
namespace {

namespace fs = std::filesystem;
using testing::reference_python;

int run_script(const std::string& args) { return testing::run_reference_script("hf_model.py", args); }

const std::vector<std::vector<int>> kTokens = {{3, 14, 15, 9, 26, 5, 35, 8}, {79, 0, 2, 71, 8, 28, 18, 28}};

std::vector<double> torch_logits(const std::string& dir, const std::string& command) {
  EXPECT_EQ(run_script(command + " " + dir + "/tokens.json " + dir + "/out.json"), 0) << command;
  std::ifstream in(dir + "/out.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  std::vector<double> out;
  for (const auto& row : j)
    for (const auto& v : row) out.push_back(v.get<double>());
  return out;
}

std::vector<double> memtrain_logits(model::Model& model) {
  auto batch = Tensor::empty({2, 8}, DType::kI32, MemCategory::kActivations);
  MEMTRAIN_CHECK_OK(batch.status());
  for (int b = 0; b < 2; ++b) std::copy(kTokens[b].begin(), kTokens[b].end(), batch->i32() + 8 * b);
  auto logits = model.last_logits(*batch);
  MEMTRAIN_CHECK_OK(logits.status());
  return std::vector<double>(logits->f32(), logits->f32() + logits->numel());
}

double relative_l2(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

class PeftReference : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!testing::reference_python_has("safetensors, torch"))
      GTEST_SKIP() << reference_python() << " cannot import safetensors: run scripts/setup.sh";
    dir_ = ::testing::TempDir() + "memtrain_peft_" + GetParam() + "_" + std::to_string(getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string dir_;
};

TEST_P(PeftReference, AdapterGivesMemtrainsLogitsInPyTorch) {
  const std::string arch = GetParam(), hf = dir_ + "/hf", adapter = dir_ + "/adapter";
  ASSERT_EQ(run_script("make " + arch + " " + hf + " 7"), 0);
  const std::string targets = arch == "gpt2" ? "c_attn,c_proj,c_fc"
                                             : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
  auto cfg = trainer::parse_config("", "test.toml",
                                   {"model.from_hf=" + hf, "lora.r=4", "lora.alpha=8", "lora.target_modules=" + targets,
                                    "output.dir=" + dir_ + "/run", "data.dataset=" + dir_ + "/data", "data.tokenizer=" + hf});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_EQ(cfg->model.arch, arch);  // from config.json
  auto bundle = trainer::build_model(*cfg);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (const auto& p : (*bundle)->params.all())
    for (int64_t i = 0; i < p->value.numel(); ++i) p->value.f32()[i] = d(rng);
  ASSERT_TRUE(trainer::write_peft_adapter(adapter, (*bundle)->params, cfg->model).ok());
  std::ofstream(dir_ + "/tokens.json") << nlohmann::json(kTokens).dump();
  const std::vector<double> ours = memtrain_logits(*(*bundle)->model);

  const double with_adapter = relative_l2(ours, torch_logits(dir_, "peft_logits " + hf + " " + adapter));
  const double base_only = relative_l2(ours, torch_logits(dir_, "logits " + hf));
  std::printf("%s: relative L2 of the logits with the adapter %.3g, against the base alone %.3g\n", arch.c_str(),
              with_adapter, base_only);
  EXPECT_LT(with_adapter, 1e-4);
  EXPECT_GT(base_only, 1e-2) << "the adapters should matter";

  // The merged model, through PyTorch's plain model.
  auto merged = trainer::merge_peft_adapter(adapter, "", dir_ + "/merged", DType::kF32, 1 << 20);
  ASSERT_TRUE(merged.ok()) << merged.status();
  const double through_merged = relative_l2(ours, torch_logits(dir_, "logits " + dir_ + "/merged"));
  std::printf("%s: relative L2 of the merged model's logits %.3g\n", arch.c_str(), through_merged);
  EXPECT_LT(through_merged, 1e-4);

  // Read back into a fresh memtrain model: the same bits.
  auto fresh = trainer::build_model(*cfg);
  ASSERT_TRUE(fresh.ok());
  auto read = trainer::read_peft_adapter(adapter);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(trainer::copy_adapter_tensors(*read, adapter, (*fresh)->params).ok());
  EXPECT_EQ(memtrain_logits(*(*fresh)->model), ours);
}

INSTANTIATE_TEST_SUITE_P(Arch, PeftReference, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace memtrain
