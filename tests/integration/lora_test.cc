// Fine-tuning runs end to end, in one process and through the memtrain binary, over a Hugging Face base directory
// written from a seed-initialised model:
// - full fine-tuning from model.from_hf starts exactly where the seed's weights would (the same losses bit for
//   bit as a fresh run of that seed);
// - a LoRA run from it trains only the adapters (they move, the loss falls), saves output.dir/adapter in PEFT's
//   layout and no model.safetensors, and resumes from its checkpoint bit for bit (the checkpoint holds the
//   adapters and their optimizer state; the base comes from model.from_hf again);
// - QLoRA (nf4 base) trains and its loss stays near LoRA's over the fp32 base;
// - `memtrain train`, `sample` (base + adapter) and `convert --merge-adapter` work from the command line;
// - instruction data (JSONL), packed and padded, fine-tunes from the command line and `eval` scores it;
// - LoRA-GA's adapters span the singular vectors of the full model's gradient, its base is offset to match;
// - QuAILoRA's adapters reach the optimum of the calibrated quantization error, computed another way;
// - PeriodicLoRA: one stage is plain LoRA merged; three stages of rank r update beyond rank r; resumes bit for bit;
// - bad [lora] keys and a missing model.from_hf are config errors naming the key.
#include <gtest/gtest.h>
#include <lapacke.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <fstream>

#include "checkpoint/hdf5_file.h"
#include "checkpoint/safetensors.h"
#include "tests/integration/cli.h"
#include "tests/unit/trainer/low_rank_oracle.h"
#include "trainer/hf_convert.h"
#include "trainer/peft_adapter.h"
#include "trainer/run_data.h"
#include "trainer/session.h"
#include "trainer/train_loop.h"

namespace memtrain {
namespace {

namespace fs = std::filesystem;

// A dataset of a checkpoint file, whole.
Tensor read_dataset(checkpoint::Hdf5File& file, const std::string& name, const Shape& shape) {
  Tensor t = *Tensor::empty(shape, DType::kF32, MemCategory::kWorkspace);
  const checkpoint::GlobalRun all{0, t.numel()};
  MEMTRAIN_CHECK_OK(file.read(name, shape, DType::kF32, {&all, 1}, t.raw()));
  return t;
}

class Lora : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_lora_" + std::to_string(getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream f(dir_ + "/text.txt");
    for (int i = 0; i < 300; ++i) f << "line " << i << ": pack my box with " << (i * 7919 % 1000) << " jugs.\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string toml(const std::string& out, const std::string& model, const std::string& extra = "") const {
    return "[model]\n" + model + "[data]\ntext = [\"" + dir_ + "/text.txt\"]\n"
           "[train]\nmax_steps = 6\nbatch_size = 4\nlog_interval = 1\neval_interval = 0\neval_batches = 2\n"
           "[optim]\nlr = 1e-2\nwarmup_steps = 0\nschedule = \"constant\"\n" + extra +
           "[output]\ndir = \"" + dir_ + "/" + out + "\"\nsamples = 0\n";
  }
  static std::string tiny_llama() {
    return "arch = \"llama\"\nn_layer = 2\nn_head = 4\nn_kv_head = 2\nn_embd = 64\nblock_size = 32\ninit_std = 0.1\n";
  }
  trainer::Config config(const std::string& text, const std::vector<std::string>& sets = {}) {
    auto cfg = trainer::parse_config(text, "test.toml", sets);
    MEMTRAIN_CHECK_OK(cfg.status());
    return *cfg;
  }
  // The base: the seed's model written as a Hugging Face directory (f32, as initialised).
  std::string write_base(const trainer::Config& cfg, const std::string& name = "base") {
    auto bundle = trainer::build_model(cfg);
    MEMTRAIN_CHECK_OK(bundle.status());
    std::vector<checkpoint::NamedTensor> params;
    for (const auto& p : (*bundle)->params.all()) params.push_back({p->name, p->value});
    const std::string hf = dir_ + "/" + name;
    MEMTRAIN_CHECK_OK(trainer::write_hf_model(hf, cfg.model, params, {}, DType::kF32, 1 << 20).status());
    return hf;
  }
  // `text` (6 steps) run whole, then stopped at step 3 (a checkpoint) and resumed to 6: the resumed steps' losses
  // are the whole run's, bit for bit, and the run learns (its loss falls by 0.2). Returns the whole run's result.
  trainer::TrainResult expect_resume_bit_for_bit(const std::string& text) {
    auto whole = trainer::run_training(config(text), true);
    MEMTRAIN_CHECK_OK(whole.status());
    EXPECT_LT(whole->losses.back(), whole->losses.front() - 0.2);
    const std::vector<std::string> ckpt = {"train.checkpoint_interval=3", "train.resume=auto"};
    EXPECT_TRUE(trainer::run_training(config(text, {ckpt[0], ckpt[1], "train.max_steps=3"}), true).ok());
    auto second = trainer::run_training(config(text, {ckpt[0], ckpt[1]}), true);
    MEMTRAIN_CHECK_OK(second.status());
    EXPECT_EQ(second->losses.size(), 3u);
    for (size_t i = 0; i < 3 && i < second->losses.size(); ++i)
      EXPECT_EQ(second->losses[i], whole->losses[3 + i]) << "step " << 4 + i;
    return *whole;
  }
  // QuAILoRA against the calibrated optimum computed another way, for `arch_model` with adapters on `targets` (r = 4,
  // alpha 8, 100 ALS steps): H summed by the test over what the quantized model (B = 0) feeds each adapted projection
  // on the run's two calibration batches (the inputs taken through the store's observer; damped by 1% of its mean
  // diagonal, as the initialisation does), E = W - Q (out, in) from the base's weights (either layout) and the model's
  // NF4 ones; the checkpointed adapters' f is within 1e-3 of f* (Eckart-Young on E H^(1/2),
  // tests/unit/trainer/low_rank_oracle.h) and below QLoRA's B = 0. Returns the base's directory.
  std::string expect_quailora_optimum(const std::string& name, const std::string& arch_model,
                                      const std::string& targets, int expected) {
    const trainer::Config plain_cfg = config(toml(name + "_plain", arch_model));
    const std::string hf = write_base(plain_cfg, name + "_base");
    auto base = trainer::build_model(plain_cfg);
    MEMTRAIN_CHECK_OK(base.status());
    const std::string qlora = "[lora]\nr = 4\nalpha = 8\ntarget_modules = " + targets + "\nquantize_base = \"nf4\"\n";
    const std::string model = "from_hf = \"" + hf + "\"\n";
    const std::vector<std::string> sets = {"train.max_steps=1", "optim.lr=1e-12", "optim.min_lr=0",
                                           "train.checkpoint_interval=1"};
    auto run = trainer::run_training(
        config(toml(name, model, qlora + "init = \"quailora\"\ncalib_batches = 2\nals_iters = 100\n"), sets), true);
    EXPECT_TRUE(run.ok()) << run.status();
    const trainer::Config qcfg = config(toml(name + "_q", model, qlora), sets);
    auto qmodel = trainer::build_model(qcfg);
    MEMTRAIN_CHECK_OK(qmodel.status());
    std::map<std::string, std::vector<double>> grams;
    const int64_t B = qcfg.train.batch_size;
    auto data = trainer::RunData::open(qcfg, B);
    MEMTRAIN_CHECK_OK(data.status());
    auto batch = (*data)->make_batch(B);
    for (int64_t step = 0; step < 2; ++step) {
      (*data)->fill_train(step, 0, B, *batch);
      model::ActivationStore store(/*keep=*/false);
      batch->apply(store);
      store.set_input_observer([&](const model::ProjectionInput& in) {
        std::vector<double>& H = grams[in.weight->name];
        H.resize(in.in * in.in);
        for (int64_t n = 0; n < in.N; ++n)
          for (int64_t i = 0; i < in.in; ++i)
            for (int64_t j = 0; j < in.in; ++j) H[i * in.in + j] += double{in.x[n * in.in + i]} * in.x[n * in.in + j];
        return absl::OkStatus();
      });
      MEMTRAIN_CHECK_OK((*qmodel)->model->forward(batch->inputs, batch->targets, 0.0f, store).status());
    }
    auto file = checkpoint::Hdf5File::open(dir_ + "/" + name + "/checkpoints/step_00000001.h5", MPI_COMM_NULL);
    MEMTRAIN_CHECK_OK(file.status());
    const int64_t r = 4;
    const double s = 8.0 / 4;
    int checked = 0;
    for (const auto& p : (*qmodel)->params.frozen_set()->all()) {
      if (grams.count(p->name) == 0) continue;  // every projection is NF4; the targets are adapted
      SCOPED_TRACE(p->name);
      const int64_t out = p->in_out ? p->shape[1] : p->shape[0], in = p->in_out ? p->shape[0] : p->shape[1];
      std::vector<float> q_weight(out * in);  // (out, in) whatever the layout
      p->nf4->dequantize(q_weight.data());
      const float* w = (*base)->params.find(p->name)->value.f32();
      std::vector<double> E(out * in), P(out * in, 0.0);
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i)
          E[o * in + i] = double{p->in_out ? w[i * out + o] : w[o * in + i]} - q_weight[o * in + i];
      const std::string prefix = p->name.substr(0, p->name.rfind('.'));
      const Tensor A = read_dataset(**file, "params/" + prefix + ".lora_A.weight", {r, in});
      const Tensor Bm = read_dataset(**file, "params/" + prefix + ".lora_B.weight", {out, r});
      for (int64_t o = 0; o < out; ++o)
        for (int64_t k = 0; k < r; ++k)
          for (int64_t i = 0; i < in; ++i) P[o * in + i] += s * Bm.f32()[o * r + k] * A.f32()[k * in + i];
      std::vector<double>& H = grams[p->name];
      double mean_diag = 0;
      for (int64_t i = 0; i < in; ++i) mean_diag += H[i * in + i] / static_cast<double>(in);
      for (int64_t i = 0; i < in; ++i) H[i * in + i] += 0.01 * mean_diag;
      const double f = testing::calibrated_error(E, P, H, out, in);
      const double f_zero = testing::calibrated_error(E, std::vector<double>(out * in, 0.0), H, out, in);
      const double f_star = testing::optimal_calibrated_error(E, H, out, in, r);
      EXPECT_LE(f, f_star * (1 + 1e-3));
      EXPECT_LT(f, f_zero);
      std::printf("%s: calibrated error %.4g with QuAILoRA, %.4g optimal, %.4g with B = 0\n", p->name.c_str(), f,
                  f_star, f_zero);
      ++checked;
    }
    EXPECT_EQ(checked, expected);
    (void)(*file)->close();
    return hf;
  }
  std::string dir_;
};

TEST_F(Lora, FullFineTuningFromHfStartsWhereTheSeedsWeightsWould) {
  const trainer::Config fresh = config(toml("fresh", tiny_llama()));
  const std::string hf = write_base(fresh);
  auto expected = trainer::run_training(fresh, /*quiet=*/true);
  ASSERT_TRUE(expected.ok()) << expected.status();
  // Another initialisation, replaced by the directory's weights.
  auto tuned = trainer::run_training(config(toml("full", "from_hf = \"" + hf + "\"\ninit_std = 0.5\n")), true);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_EQ(tuned->losses, expected->losses);
}

TEST_F(Lora, AdaptersTrainSaveInPeftLayoutAndResumeBitForBit) {
  const std::string hf = write_base(config(toml("x", tiny_llama())));
  const std::string model = "from_hf = \"" + hf + "\"\n";
  const std::string lora = "[lora]\nr = 8\nalpha = 16\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]\n";
  auto whole = trainer::run_training(config(toml("whole", model, lora), {"train.max_steps=12"}), true);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_LT(whole->losses.back(), whole->losses.front() - 0.2);
  EXPECT_FALSE(fs::exists(dir_ + "/whole/model.safetensors"));
  auto adapter = trainer::read_peft_adapter(dir_ + "/whole/adapter");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ(adapter->tensors.size(), 3u * 2 * 2);  // 3 modules, A and B, 2 layers
  EXPECT_EQ(adapter->spec.r, 8);
  EXPECT_EQ(adapter->base_model, hf);

  // Stopped after 6 steps (a checkpoint at 6), then resumed to 12: the same losses.
  const std::string resumed = toml("resumed", model, lora);
  const std::vector<std::string> ckpt = {"train.checkpoint_interval=6", "train.resume=auto"};
  auto first = trainer::run_training(config(resumed, {ckpt[0], ckpt[1], "train.max_steps=6"}), true);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = trainer::run_training(config(resumed, {ckpt[0], ckpt[1], "train.max_steps=12"}), true);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->losses.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(second->losses[i], whole->losses[6 + i]) << "step " << 7 + i;

  // LoRA dropout reaches the training steps: B starts at 0, so the first loss is the base's either way; the
  // first update, made through the masks, differs.
  auto dropped = trainer::run_training(
      config(toml("dropout", model, lora + "dropout = 0.2\n"), {"train.max_steps=2"}), true);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(dropped->losses[0], whole->losses[0]);
  EXPECT_NE(dropped->losses[1], whole->losses[1]);

  // QLoRA over the same base: trains, and its losses stay near LoRA's (the base is 4-bit).
  auto qlora = trainer::run_training(
      config(toml("qlora", model, lora + "quantize_base = \"nf4\"\n"), {"train.max_steps=12"}), true);
  ASSERT_TRUE(qlora.ok()) << qlora.status();
  EXPECT_LT(qlora->losses.back(), qlora->losses.front() - 0.2);
  EXPECT_NEAR(qlora->losses.front(), whole->losses.front(), 0.05 * whole->losses.front());
}

// The significant singular values (above 1e-3 of the largest) of a - b, two (out, in) matrices.
int64_t update_rank(const Tensor& a, const Tensor& b) {
  const int64_t m = a.shape()[0], n = a.shape()[1];
  std::vector<double> d(m * n), s(std::min(m, n));
  for (int64_t i = 0; i < m * n; ++i) d[i] = static_cast<double>(a.f32()[i]) - b.f32()[i];
  std::vector<double> superb(s.size());
  MEMTRAIN_CHECK(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', m, n, d.data(), n, s.data(), nullptr, 1, nullptr, 1,
                                superb.data()) == 0);
  return std::count_if(s.begin(), s.end(), [&](double v) { return v > 1e-3 * s[0]; });
}

// PeriodicLoRA. One stage as long as the run is plain LoRA: the same losses, and the merged model it saves is what
// convert --merge-adapter makes of plain LoRA's adapter. Three stages of rank 2 give an update W - W0 of rank 6 (plain
// LoRA's is rank 2: the measure tells them apart). A run stopped mid-stage or at a stage's end
// resumes bit for bit: the checkpoint holds the merged base.
TEST_F(Lora, PeriodicLoraMergesStagesIntoAHigherRankUpdate) {
  const std::string hf = write_base(config(toml("x", tiny_llama())));
  const std::string model = "from_hf = \"" + hf + "\"\n";
  const std::string lora = "[lora]\nr = 2\nalpha = 4\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]\n";
  const std::vector<std::string> twelve = {"train.max_steps=12"};
  auto plain = trainer::run_training(config(toml("plain", model, lora), twelve), true);
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto one = trainer::run_training(config(toml("one", model, lora), {twelve[0], "lora.periodic_interval=12"}), true);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->losses, plain->losses);
  EXPECT_FALSE(fs::exists(dir_ + "/one/adapter"));
  auto merged = trainer::merge_peft_adapter(dir_ + "/plain/adapter", hf, dir_ + "/plain_merged", std::nullopt, 1 << 30);
  ASSERT_TRUE(merged.ok()) << merged.status();
  auto expected = trainer::read_hf_model(dir_ + "/plain_merged", MemCategory::kWorkspace);
  auto saved = checkpoint::read_safetensors(dir_ + "/one/model.safetensors", MemCategory::kWorkspace);
  ASSERT_TRUE(expected.ok() && saved.ok()) << expected.status() << saved.status();
  ASSERT_EQ(saved->tensors.size(), expected->params.size());
  for (const checkpoint::NamedTensor& t : saved->tensors) {
    const Tensor& e = expected->params.at(t.name);
    ASSERT_EQ(t.tensor.shape(), e.shape()) << t.name;
    for (int64_t i = 0; i < e.numel(); ++i)
      ASSERT_NEAR(t.tensor.f32()[i], e.f32()[i], 1e-6 * (1 + std::fabs(e.f32()[i]))) << t.name << "[" << i << "]";
  }

  const std::string periodic = lora + "periodic_interval = 4\n";
  auto three = trainer::run_training(config(toml("three", model, periodic), twelve), true);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_LT(three->losses.back(), three->losses.front() - 0.2);
  auto base = trainer::read_hf_model(hf, MemCategory::kWorkspace);
  auto stages = checkpoint::read_safetensors(dir_ + "/three/model.safetensors", MemCategory::kWorkspace);
  ASSERT_TRUE(base.ok() && stages.ok());
  for (const checkpoint::NamedTensor& t : stages->tensors) {
    if (t.name.find("q_proj") == std::string::npos && t.name.find("down_proj") == std::string::npos) continue;
    const Tensor& w0 = base->params.at(t.name);
    EXPECT_EQ(update_rank(t.tensor, w0), 3 * 2) << t.name << ": three stages of rank 2";
    EXPECT_EQ(update_rank(expected->params.at(t.name), w0), 2) << t.name << ": plain LoRA";
  }

  // eval reads the merged model the run saved.
  const std::string path = dir_ + "/three.toml";
  std::ofstream(path) << toml("three", model, periodic);
  auto eval = testing::run_memtrain("eval " + path + " --set train.max_steps=12", dir_);
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  double val = 0;
  ASSERT_EQ(std::sscanf(eval.out.c_str(), "val_loss %lf", &val), 1) << eval.out;
  EXPECT_NEAR(val, three->final_val_loss, 1e-5 * three->final_val_loss);

  for (const auto& [stop, every] : {std::pair{6, 3}, std::pair{8, 4}}) {
    SCOPED_TRACE("stopped at " + std::to_string(stop));
    const std::string text = toml("resumed_" + std::to_string(stop), model, periodic);
    const std::vector<std::string> ckpt = {"train.checkpoint_interval=" + std::to_string(every), "train.resume=auto"};
    const std::string until = "train.max_steps=" + std::to_string(stop);
    auto first = trainer::run_training(config(text, {ckpt[0], ckpt[1], until}), true);
    ASSERT_TRUE(first.ok()) << first.status();
    auto second = trainer::run_training(config(text, {ckpt[0], ckpt[1], twelve[0]}), true);
    ASSERT_TRUE(second.ok()) << second.status();
    ASSERT_EQ(second->losses.size(), static_cast<size_t>(12 - stop));
    for (int i = stop; i < 12; ++i) EXPECT_EQ(second->losses[i - stop], three->losses[i]) << "step " << i + 1;
    EXPECT_EQ(second->final_val_loss, three->final_val_loss);
  }
}

// Projector onto the eigenvectors [lo, hi) (by descending eigenvalue) of the symmetric n x n matrix S (float64,
// LAPACK's symmetric eigensolver: another algorithm than the SVD LoRA-GA uses).
std::vector<double> eigen_projector(std::vector<double> S, int64_t n, int64_t lo, int64_t hi) {
  std::vector<double> w(n);
  MEMTRAIN_CHECK(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', n, S.data(), n, w.data()) == 0);  // ascending
  std::vector<double> P(n * n, 0.0);
  for (int64_t e = lo; e < hi; ++e) {
    const int64_t col = n - 1 - e;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) P[i * n + j] += S[i * n + col] * S[j * n + col];
  }
  return P;
}

// LoRA-GA against the full model's weight gradient computed directly (a plain model, forward and backward on the
// run's first batch): A's rows span the gradient's top r right singular vectors and B's columns the left ones
// r..2r (projectors within 1e-3, from an eigensolver on G^T G and G G^T), both scaled by out^(1/4) / sqrt(16);
// the checkpointed base is W0 - (alpha / r) B A, so the first loss is plain LoRA's (the base's); and it resumes.
TEST_F(Lora, LoraGaStartsFromTheGradientsSingularVectors) {
  const trainer::Config plain_cfg = config(toml("plain_base", tiny_llama()), {"train.max_steps=1"});
  const std::string hf = write_base(plain_cfg);
  auto full = trainer::build_model(plain_cfg);
  ASSERT_TRUE(full.ok()) << full.status();
  {
    auto data = trainer::RunData::open(plain_cfg, plain_cfg.train.batch_size);
    ASSERT_TRUE(data.ok()) << data.status();
    auto batch = (*data)->make_batch(plain_cfg.train.batch_size);
    (*data)->fill_train(0, 0, plain_cfg.train.batch_size, *batch);
    model::ActivationStore store;
    batch->apply(store);
    ASSERT_TRUE((*full)->model->forward(batch->inputs, batch->targets,
                                        1.0f / static_cast<float>((*data)->train_normalizer(0)), store).ok());
    ASSERT_TRUE((*full)->model->backward(store).ok());
  }
  const std::string model = "from_hf = \"" + hf + "\"\n";
  const std::string lora = "[lora]\nr = 2\nalpha = 4\ntarget_modules = [\"q_proj\", \"down_proj\"]\n";
  // One step at a learning rate too small to move anything: the checkpoint holds the initialisation.
  const std::vector<std::string> sets = {"train.max_steps=1", "optim.lr=1e-12", "optim.min_lr=0",
                                         "train.checkpoint_interval=1"};
  auto ga = trainer::run_training(config(toml("ga", model, lora + "init = \"lora_ga\"\nga_batches = 1\n"), sets), true);
  ASSERT_TRUE(ga.ok()) << ga.status();
  auto plain = trainer::run_training(config(toml("plain", model, lora), sets), true);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_NEAR(ga->losses[0], plain->losses[0], 1e-5 * plain->losses[0]);
  auto file = checkpoint::Hdf5File::open(dir_ + "/ga/checkpoints/step_00000001.h5", MPI_COMM_NULL);
  ASSERT_TRUE(file.ok()) << file.status();
  const double s = 4.0 / 2, c = 1.0 / std::sqrt(16.0);
  int checked = 0;
  for (const auto& p : (*full)->params.all()) {
    if (p->name.find("q_proj") == std::string::npos && p->name.find("down_proj") == std::string::npos) continue;
    SCOPED_TRACE(p->name);
    const std::string prefix = p->name.substr(0, p->name.rfind('.'));
    const int64_t out = p->shape[0], in = p->shape[1], r = 2;
    const Tensor A = read_dataset(**file, "params/" + prefix + ".lora_A.weight", {r, in});
    const Tensor B = read_dataset(**file, "params/" + prefix + ".lora_B.weight", {out, r});
    const Tensor W = read_dataset(**file, "base/" + p->name, p->shape);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double ba = 0;
        for (int64_t k = 0; k < r; ++k) ba += static_cast<double>(B.f32()[o * r + k]) * A.f32()[k * in + i];
        ASSERT_NEAR(W.f32()[o * in + i], p->value.f32()[o * in + i] - s * ba, 1e-6);
      }
    // The projectors: A^T A / (c^2 sqrt(out)) against V_r V_r^T, B B^T / (c^2 sqrt(out)) against U_{r..2r} U^T.
    const float* G = p->grad.f32();
    std::vector<double> gtg(in * in, 0.0), ggt(out * out, 0.0);
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j)
        for (int64_t o = 0; o < out; ++o) gtg[i * in + j] += static_cast<double>(G[o * in + i]) * G[o * in + j];
    for (int64_t a = 0; a < out; ++a)
      for (int64_t b = 0; b < out; ++b)
        for (int64_t i = 0; i < in; ++i) ggt[a * out + b] += static_cast<double>(G[a * in + i]) * G[b * in + i];
    const std::vector<double> pv = eigen_projector(gtg, in, 0, r), pu = eigen_projector(ggt, out, r, 2 * r);
    const double norm = c * c * std::sqrt(static_cast<double>(out));
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) {
        double ata = 0;
        for (int64_t k = 0; k < r; ++k) ata += static_cast<double>(A.f32()[k * in + i]) * A.f32()[k * in + j];
        ASSERT_NEAR(ata / norm, pv[i * in + j], 1e-3) << "A^T A (" << i << ", " << j << ")";
      }
    for (int64_t a = 0; a < out; ++a)
      for (int64_t b = 0; b < out; ++b) {
        double bbt = 0;
        for (int64_t k = 0; k < r; ++k) bbt += static_cast<double>(B.f32()[a * r + k]) * B.f32()[b * r + k];
        ASSERT_NEAR(bbt / norm, pu[a * out + b], 1e-3) << "B B^T (" << a << ", " << b << ")";
      }
    ++checked;
  }
  EXPECT_EQ(checked, 4);  // two modules, two layers
  (void)(*file)->close();

  // Stopped at step 3 and resumed to 6: the checkpoint holds the offset base; the initialisation does not run again.
  expect_resume_bit_for_bit(toml("ga_resumed", model, lora + "init = \"lora_ga\"\n"));
}

// QuAILoRA: its adapters reach the optimum of the calibrated quantization error (expect_quailora_optimum) on LLaMA
// (nn.Linear's layout) and GPT-2 (Conv1D's, a fused c_attn); the first loss is nearer the unquantized base's than
// QLoRA's; a resumed run does not initialise again (bit for bit); the adapter merged into the NF4 base scores what
// the run did.
TEST_F(Lora, QuailoraCancelsTheCalibratedQuantizationError) {
  const std::string gpt2 = "arch = \"gpt2\"\nn_layer = 2\nn_head = 2\nn_embd = 64\nblock_size = 32\ninit_std = 0.1\n";
  expect_quailora_optimum("quail_gpt2", gpt2, "[\"c_attn\", \"c_fc\"]", 4);
  const std::string hf = expect_quailora_optimum("quail", tiny_llama(), "[\"q_proj\", \"v_proj\"]", 4);
  const std::string model = "from_hf = \"" + hf + "\"\n";
  const std::string lora = "[lora]\nr = 4\nalpha = 8\ntarget_modules = [\"q_proj\", \"v_proj\"]\n";
  const std::string qlora = lora + "quantize_base = \"nf4\"\n";
  const std::string quail = qlora + "init = \"quailora\"\n";
  const std::vector<std::string> sets = {"train.max_steps=1", "optim.lr=1e-12", "optim.min_lr=0"};
  auto q = trainer::run_training(config(toml("quail_first", model, quail), sets), true);
  ASSERT_TRUE(q.ok()) << q.status();
  auto fp = trainer::run_training(config(toml("fp", model, lora), sets), true);
  ASSERT_TRUE(fp.ok()) << fp.status();
  auto plain_q = trainer::run_training(config(toml("qlora", model, qlora), sets), true);
  ASSERT_TRUE(plain_q.ok()) << plain_q.status();
  EXPECT_LT(std::fabs(q->losses[0] - fp->losses[0]), std::fabs(plain_q->losses[0] - fp->losses[0]));

  // Stopped at step 3 and resumed to 6: the adapters come from the checkpoint, the initialisation does not run.
  const double final_val_loss = expect_resume_bit_for_bit(toml("quail_resumed", model, quail)).final_val_loss;

  // Merged into the NF4 base (convert --nf4-base), the adapter gives the model the run trained: eval scores what the
  // run's last evaluation did. Merged into the fp32 base, the error it cancels counts twice.
  const std::string eval_path = dir_ + "/eval.toml";
  std::ofstream(eval_path) << toml("merged_eval", model);
  double val[2];
  for (int nf4 = 0; nf4 < 2; ++nf4) {
    const std::string out = dir_ + "/merged" + std::to_string(nf4);
    auto merge = testing::run_memtrain("convert --merge-adapter " + dir_ + "/quail_resumed/adapter" +
                                           (nf4 ? " --nf4-base" : "") + " --out " + out, dir_);
    ASSERT_EQ(merge.exit_code, 0) << merge.err;
    auto eval = testing::run_memtrain("eval " + eval_path + " --weights " + out + "/model.safetensors", dir_);
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    ASSERT_EQ(std::sscanf(eval.out.c_str(), "val_loss %lf", &val[nf4]), 1) << eval.out;
  }
  std::printf("val loss %.6f in training; merged into the NF4 base %.6f, into the fp32 base %.6f\n",
              final_val_loss, val[1], val[0]);
  EXPECT_NEAR(val[1], final_val_loss, 1e-5 * final_val_loss);
  EXPECT_GT(std::fabs(val[0] - final_val_loss), 10 * std::fabs(val[1] - final_val_loss));
}

TEST_F(Lora, CommandLineTrainSampleAndMerge) {
  const std::string hf = write_base(config(toml("x", tiny_llama())));
  const std::string path = dir_ + "/run.toml";
  std::ofstream(path) << toml("cli", "from_hf = \"" + hf + "\"\n", "[lora]\nr = 4\n");
  auto train = testing::run_memtrain("train " + path, dir_);
  ASSERT_EQ(train.exit_code, 0) << train.err;
  EXPECT_NE(train.out.find("saved the adapter to " + dir_ + "/cli/adapter"), std::string::npos) << train.out;
  auto sample = testing::run_memtrain("sample " + path + " --set output.samples=1 --set output.sample_tokens=8", dir_);
  ASSERT_EQ(sample.exit_code, 0) << sample.err;
  EXPECT_NE(sample.out.find("--- sample 1 ---"), std::string::npos) << sample.out;
  const std::string merge_args = "convert --merge-adapter " + dir_ + "/cli/adapter --out " + dir_ + "/merged";
  auto merge = testing::run_memtrain(merge_args, dir_);
  ASSERT_EQ(merge.exit_code, 0) << merge.err;
  EXPECT_TRUE(fs::exists(dir_ + "/merged/config.json") && fs::exists(dir_ + "/merged/model.safetensors"));
  // A base of another shape: the adapter's tensors do not fit, and the error says which.
  trainer::Config other = config(toml("y", tiny_llama()), {"model.n_embd=32"});
  const std::string small = write_base(other);
  auto wrong = testing::run_memtrain("convert --merge-adapter " + dir_ + "/cli/adapter --base " + small + " --out " +
                                         dir_ + "/bad", dir_);
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.err.find("lora_A.weight is "), std::string::npos) << wrong.err;
}

// Instruction data: a LoRA run on JSONL examples, packed and padded, learns the responses (the loss counts only
// trained targets, so it starts near ln(256) and falls); eval reads the adapter and the held-out examples; a bad
// record stops the run before anything is written, naming the file and line.
TEST_F(Lora, InstructionFineTuningFromTheCommandLine) {
  const std::string hf = write_base(config(toml("x", tiny_llama())));
  {
    std::ofstream f(dir_ + "/sft.jsonl");
    for (int i = 0; i < 120; ++i)
      f << "{\"prompt\": \"echo " << i % 10 << "\", \"response\": \"" << i % 10 << i % 10 << i % 10 << "\"}\n";
  }
  const std::string data =
      "[data]\ninstructions = \"" + dir_ + "/sft.jsonl\"\nprompt_template = \"{prompt}:\"\neos = \"$\"\n";
  for (const std::string packing : {"true", "false"}) {
    SCOPED_TRACE("packing = " + packing);
    std::string text = toml("sft_" + packing, "from_hf = \"" + hf + "\"\n", "[lora]\nr = 8\n");
    text = text.substr(0, text.find("[data]")) + data + "packing = " + packing + "\n" +
           text.substr(text.find("[train]"));
    const std::string path = dir_ + "/sft_" + packing + ".toml";
    std::ofstream(path) << text;
    auto train = testing::run_memtrain("train " + path + " --set train.max_steps=30", dir_);
    ASSERT_EQ(train.exit_code, 0) << train.err;
    auto eval = testing::run_memtrain("eval " + path, dir_);
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    double val = 0;
    ASSERT_EQ(std::sscanf(eval.out.c_str(), "val_loss %lf", &val), 1) << eval.out;
    // From ln(256) = 5.5 at the start; measured 2.4 packed and 2.9 padded (fewer examples per step) after 30 steps.
    EXPECT_LT(val, 3.5) << "the responses repeat the prompt's digit";
  }
  std::ofstream(dir_ + "/bad.jsonl") << "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": 3}\n";
  const std::string path = dir_ + "/bad.toml";
  std::string text = toml("bad", tiny_llama());
  text = text.substr(0, text.find("[data]")) + "[data]\ninstructions = \"" + dir_ + "/bad.jsonl\"\n" +
         text.substr(text.find("[train]"));
  std::ofstream(path) << text;
  auto bad = testing::run_memtrain("train " + path, dir_);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find(dir_ + "/bad.jsonl:2"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir_ + "/bad")) << "nothing written";
}

TEST_F(Lora, BadKeysAreConfigErrorsNamingTheKey) {
  struct Case {
    std::vector<std::string> sets;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"lora.r=4", "lora.target_modules=qproj"}, "lora.target_modules: 'qproj' is not a projection of llama"},
      {{"lora.quantize_base=nf4"}, "lora.quantize_base: nf4 needs lora.r > 0"},
      {{"lora.quantize_base=int4", "lora.r=4"}, "lora.quantize_base: must be none or nf4"},
      {{"lora.r=-1"}, "lora.r: must be >= 0"},
      {{"lora.r=4", "lora.alpha=0"}, "lora.alpha: must be > 0"},
      {{"lora.r=4", "parallel.pp=2"}, "parallel.pp: 2 pipeline stages"},
      {{"model.from_hf=" + dir_ + "/nowhere"}, "model.from_hf: cannot read " + dir_ + "/nowhere/config.json"},
  };
  for (const Case& c : cases) {
    auto cfg = trainer::parse_config(toml("bad", tiny_llama()), "test.toml", c.sets);
    ASSERT_FALSE(cfg.ok()) << c.message;
    EXPECT_NE(cfg.status().message().find(c.message), std::string::npos) << cfg.status();
  }
}

}  // namespace
}  // namespace memtrain
