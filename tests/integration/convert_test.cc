// memtrain convert in one process, without Python: weights exported to a Hugging Face directory and imported back
// start a run exactly where the original weights would (the same losses bit for bit, the optimizer fresh); a
// model of another shape resuming from them is a config error listing the tensors; bad Hugging Face directories
// (unsupported configs, missing or unexpected tensors, an index pointing outside the directory or at the wrong
// shard, truncated files) fail with an error naming what is wrong, and converting into a directory that already
// holds checkpoints is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include <nlohmann/json.hpp>

#include "checkpoint/hf_directory.h"
#include "core/file_io.h"
#include "tests/integration/cli.h"
#include "trainer/checkpoint_file.h"
#include "trainer/session.h"
#include "trainer/hf_convert.h"
#include "trainer/train_loop.h"

namespace memtrain {
namespace {

namespace fs = std::filesystem;

class Convert : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_convert_" + std::to_string(getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream f(dir_ + "/text.txt");
    for (int i = 0; i < 300; ++i) f << "line " << i << ": pack my box with " << (i * 7919 % 1000) << " jugs.\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  trainer::Config config(const std::string& out, const std::string& arch, const std::string& extra = "",
                         const std::string& model_extra = "") {
    const std::string toml = "[model]\narch = \"" + arch + "\"\nn_layer = 2\nn_head = 4\nn_kv_head = " +
                             (arch == "llama" ? "2" : "0") + "\nn_embd = 32\nblock_size = 32\n" + model_extra +
                             "[data]\ntext = [\"" + dir_ + "/text.txt\"]\n"
                             "[train]\nmax_steps = 6\nbatch_size = 4\nlog_interval = 1\neval_interval = 0\n"
                             "eval_batches = 2\n" + extra +
                             "[output]\ndir = \"" + dir_ + "/" + out + "\"\nsave_weights = false\nsamples = 0\n";
    auto cfg = trainer::parse_config(toml, "test.toml", {});
    MEMTRAIN_CHECK_OK(cfg.status());
    return *cfg;
  }
  // A Hugging Face directory holding `cfg`'s model as initialised from its seed.
  std::string export_initial(const trainer::Config& cfg, const std::string& name, int64_t shard_bytes = 1 << 20) {
    auto bundle = trainer::build_model(cfg);
    MEMTRAIN_CHECK_OK(bundle.status());
    std::vector<checkpoint::NamedTensor> params;
    for (const auto& p : (*bundle)->params.all()) params.push_back({p->name, p->value});
    trainer::Config src = cfg;
    src.output.dir = dir_ + "/" + name + "_src";
    MEMTRAIN_CHECK_OK(trainer::write_weights_checkpoint(src, params, ""));
    const std::string hf = dir_ + "/" + name + "_hf";
    MEMTRAIN_CHECK_OK(trainer::export_hf(src.output.dir, hf, std::nullopt, shard_bytes).status());
    return hf;
  }
  std::string dir_;
};

TEST_F(Convert, ImportedWeightsStartARunWhereTheOriginalWeightsWould) {
  for (const std::string arch : {"gpt2", "llama"}) {
    SCOPED_TRACE(arch);
    const trainer::Config fresh = config(arch + "_fresh", arch);
    auto expected = trainer::run_training(fresh, /*quiet=*/true);
    ASSERT_TRUE(expected.ok()) << expected.status();
    const std::string hf = export_initial(fresh, arch, /*shard_bytes=*/16384);
    ASSERT_TRUE(fs::exists(hf + "/model.safetensors.index.json"));
    ASSERT_TRUE(trainer::import_hf(hf, dir_ + "/" + arch + "_imported").ok());
    // Another initialisation (init_std, not seed: seed also orders the data), replaced by the imported weights.
    auto resumed = trainer::run_training(
        config(arch + "_imported", arch, "resume = \"auto\"\ncheckpoint_interval = 3\n", "init_std = 0.5\n"),
        /*quiet=*/true);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    ASSERT_EQ(resumed->losses.size(), 6u);
    EXPECT_EQ(resumed->losses, expected->losses);
  }
}

TEST_F(Convert, AModelOfAnotherShapeCannotResumeFromTheWeights) {
  const std::string hf = export_initial(config("src", "gpt2"), "gpt2");
  ASSERT_TRUE(trainer::import_hf(hf, dir_ + "/run").ok());
  trainer::Config wider = config("run", "gpt2", "resume = \"auto\"\n");
  wider.model.n_embd = 64;
  auto r = trainer::run_training(wider, /*quiet=*/true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("does not fit this model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("params/transformer.wte.weight is f32(256, 32) in the file, the model needs f32(256, 64)"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("more"), std::string::npos) << "a long list is cut: " << msg;
}

// Rewrites config.json of `hf` with `edit` applied.
void edit_config(const std::string& hf, const std::function<void(nlohmann::json&)>& edit) {
  auto text = read_file(hf + "/config.json");
  MEMTRAIN_CHECK_OK(text.status());
  nlohmann::json j = nlohmann::json::parse(*text);
  edit(j);
  MEMTRAIN_CHECK_OK(write_file_atomically(hf + "/config.json", {j.dump()}));
}

void expect_error(const absl::Status& s, absl::StatusCode code, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), code) << s;
  for (const std::string& p : parts) EXPECT_NE(s.message().find(p), absl::string_view::npos) << p << " in " << s;
}

TEST_F(Convert, UnsupportedConfigsAreErrorsNamingTheKey) {
  const std::string hf = export_initial(config("src", "llama"), "llama");
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string key;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; }, "rope_scaling"},
      {[](nlohmann::json& j) { j["hidden_act"] = "gelu"; }, "hidden_act"},
      {[](nlohmann::json& j) { j["attention_bias"] = true; }, "attention_bias"},
      {[](nlohmann::json& j) { j["hidden_size"] = "32"; }, "hidden_size"},
      {[](nlohmann::json& j) { j["model_type"] = "mistral"; }, "model_type"},
      {[](nlohmann::json& j) { j.erase("num_hidden_layers"); }, "num_hidden_layers"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string copy = dir_ + "/case" + std::to_string(i);
    fs::copy(hf, copy);
    edit_config(copy, cases[i].edit);
    expect_error(trainer::import_hf(copy, dir_ + "/out" + std::to_string(i)).status(),
                 absl::StatusCode::kInvalidArgument, {"config.json: " + cases[i].key});
    EXPECT_FALSE(fs::exists(dir_ + "/out" + std::to_string(i) + "/checkpoints/latest"));
  }
}

TEST_F(Convert, MissingUnexpectedAndMisshapenTensorsAreListed) {
  const std::string hf = export_initial(config("src", "gpt2"), "gpt2");
  auto dir = checkpoint::read_hf_directory(hf, MemCategory::kWorkspace);
  ASSERT_TRUE(dir.ok());
  std::vector<checkpoint::NamedTensor> tensors;
  for (auto& t : dir->tensors) {
    if (t.name == "transformer.h.1.mlp.c_fc.bias") continue;                              // missing
    if (t.name == "transformer.ln_f.weight") t.tensor = t.tensor.view({2, 16});            // misshapen
    tensors.push_back(t);
  }
  tensors.push_back({"transformer.h.7.attn.c_proj.weight", dir->tensors[0].tensor});     // unexpected
  ASSERT_TRUE(checkpoint::write_hf_directory(dir_ + "/bad", dir->config_json, tensors, 1 << 30).ok());
  expect_error(trainer::import_hf(dir_ + "/bad", dir_ + "/out").status(), absl::StatusCode::kInvalidArgument,
               {"missing transformer.h.1.mlp.c_fc.bias", "transformer.ln_f.weight is (2, 16), the model needs (32)",
                "transformer.h.7.attn.c_proj.weight is not a parameter"});
}

TEST_F(Convert, BadIndexesAndFilesAreErrorsNamingTheFile) {
  const std::string hf = export_initial(config("src", "gpt2"), "gpt2", /*shard_bytes=*/16384);
  const std::string index = hf + "/model.safetensors.index.json";
  auto text = read_file(index);
  ASSERT_TRUE(text.ok());
  const nlohmann::json good = nlohmann::json::parse(*text);
  auto with_index = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    MEMTRAIN_CHECK_OK(write_file_atomically(index, {j.dump()}));
    return trainer::import_hf(hf, dir_ + "/out").status();
  };
  expect_error(with_index([](nlohmann::json& j) { j["weight_map"]["transformer.wte.weight"] = "../x.safetensors"; }),
               absl::StatusCode::kDataLoss, {"not a file of the directory"});
  // The index assigns a tensor to another shard than the one holding it.
  const std::string home = good["weight_map"]["transformer.wte.weight"], other = good["weight_map"]["transformer.ln_f.bias"];
  ASSERT_NE(home, other);
  expect_error(with_index([&](nlohmann::json& j) { j["weight_map"]["transformer.wte.weight"] = other; }),
               absl::StatusCode::kDataLoss, {"'transformer.wte.weight', which model.safetensors.index.json"});
  expect_error(with_index([&](nlohmann::json& j) { j["weight_map"]["transformer.extra"] = home; }),
               absl::StatusCode::kDataLoss, {"lacks 'transformer.extra'"});
  expect_error(with_index([](nlohmann::json& j) { j["weight_map"] = 3; }), absl::StatusCode::kDataLoss, {"weight_map"});
  MEMTRAIN_CHECK_OK(write_file_atomically(index, {good.dump()}));
  // A truncated shard.
  fs::resize_file(hf + "/" + other, fs::file_size(hf + "/" + other) - 100);
  expect_error(trainer::import_hf(hf, dir_ + "/out").status(), absl::StatusCode::kDataLoss, {other});
  EXPECT_FALSE(fs::exists(dir_ + "/out/checkpoints/latest"));
}

TEST_F(Convert, ConvertingIntoADirectoryWithCheckpointsIsRefused) {
  const std::string hf = export_initial(config("src", "gpt2"), "gpt2");
  ASSERT_TRUE(trainer::import_hf(hf, dir_ + "/out").ok());
  expect_error(trainer::import_hf(hf, dir_ + "/out").status(), absl::StatusCode::kFailedPrecondition,
               {"already holds checkpoints"});
}

TEST_F(Convert, TheCommandLineConvertsBothWays) {
  const std::string hf = export_initial(config("src", "llama"), "llama");
  auto r = testing::run_memtrain("convert --from-hf " + hf + " --out " + dir_ + "/run", dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("arch = \"llama\""), std::string::npos) << r.out;
  r = testing::run_memtrain("convert --to-hf " + dir_ + "/run --out " + dir_ + "/back --dtype bf16", dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto back = checkpoint::read_hf_directory(dir_ + "/back", MemCategory::kWorkspace);
  ASSERT_TRUE(back.ok()) << back.status();
  for (const auto& t : back->tensors) EXPECT_EQ(t.tensor.dtype(), DType::kBF16) << t.name;
  r = testing::run_memtrain("convert --to-hf " + dir_ + "/run", dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--out"), std::string::npos) << r.err;
  r = testing::run_memtrain("convert --from-hf " + dir_ + "/nowhere --out " + dir_ + "/x", dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("nowhere/config.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace memtrain
