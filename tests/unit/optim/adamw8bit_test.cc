// 8-bit AdamW against fp32 AdamW (itself checked against torch elsewhere): the first step from zero moments moves
// the parameters by the same bits (the update runs on the fp32 moments before they are requantized), the stored
// moments are exactly the blockwise quantization of fp32 AdamW's, later steps stay close, a tensor split into
// block-aligned pieces (a ZeRO shard) steps exactly as the whole tensor, and the state is ~2 bytes per parameter.
#include "optim/adamw8bit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/cpu/adamw.h"
#include "core/cpu/dynamic_map.h"
#include "core/memory.h"
#include "optim/adamw.h"

namespace memtrain::optim {
namespace {

// A matrix big enough to be quantized (4900 elements: 20 blocks, the last partial) and a bias that keeps fp32
// moments.
struct Model {
  model::ParamSet ps;
  Model() {
    ps.add("w", {70, 70}, model::ParamKind::kWeight, {});
    ps.add("b", {70}, model::ParamKind::kBias, {});
    MEMTRAIN_CHECK_OK(ps.allocate());
    std::mt19937 rng(11);
    std::normal_distribution<float> d(0.0f, 0.5f);
    for (const auto& p : ps.all())
      for (int64_t i = 0; i < p->value.numel(); ++i) p->value.f32()[i] = d(rng);
  }
  void set_grads(int step) {
    std::mt19937 rng(100 + step);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (const auto& p : ps.all())
      for (int64_t i = 0; i < p->grad.numel(); ++i) p->grad.f32()[i] = d(rng) * 0.1f;
  }
  std::vector<float> values(int k) const {
    const Tensor& v = ps.all()[k]->value;
    return std::vector<float>(v.f32(), v.f32() + v.numel());
  }
};

OptimConfig config(const char* name) {
  OptimConfig c;
  c.name = name;
  c.weight_decay = 0.1;
  return c;
}

TEST(AdamW8bit, FirstStepMovesParametersAsFp32AdamWAndStoresItsMomentsQuantized) {
  Model a, b;
  auto fp32 = AdamW::create(a.ps, config("adamw"));
  auto q = AdamW8bit::create(whole_targets(b.ps), config("adamw8bit"));
  ASSERT_TRUE(fp32.ok() && q.ok());
  a.set_grads(0);
  b.set_grads(0);
  ASSERT_TRUE(fp32->step(1e-3).ok());
  ASSERT_TRUE((*q)->step(1e-3).ok());
  for (int k = 0; k < 2; ++k) EXPECT_EQ(a.values(k), b.values(k)) << k;
  // fp32 AdamW's moments after the step (the kernel run on zero moments); the 8-bit ones are their codes.
  const auto& q8 = static_cast<const AdamW8bit&>(**q);
  const Tensor& g = b.ps.all()[0]->grad;
  const int64_t n = g.numel();
  std::vector<float> p(n), m(n, 0.0f), v(n, 0.0f);
  cpu::adamw_step(p.data(), g.f32(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, ThreadPool::global());
  for (bool second : {false, true}) {
    const std::vector<float>& want = second ? v : m;
    std::vector<float> codes_back(n);
    std::vector<uint8_t> codes(n);
    std::vector<float> absmax((n + 255) / 256);
    const cpu::CodeBook& book = cpu::dynamic_code_book(!second);
    cpu::quantize_blocks(book, want.data(), n, 256, codes.data(), absmax.data(), ThreadPool::global());
    cpu::dequantize_blocks(book, codes.data(), absmax.data(), n, 256, codes_back.data(), ThreadPool::global());
    EXPECT_EQ(q8.moment(0, second), codes_back) << (second ? "v" : "m");
    EXPECT_EQ(q8.moment(1, second).size(), 70u);  // the bias: fp32 moments
  }
}

// Over 30 steps the quantized moments nudge the update: the parameters' total movement stays within a few percent
// of fp32 AdamW's, far from what a wrong code book or block boundary gives.
TEST(AdamW8bit, ThirtyStepsTrackFp32AdamW) {
  Model a, b;
  const std::vector<float> start = a.values(0);
  auto fp32 = AdamW::create(a.ps, config("adamw"));
  auto q = AdamW8bit::create(whole_targets(b.ps), config("adamw8bit"));
  ASSERT_TRUE(fp32.ok() && q.ok());
  for (int s = 0; s < 30; ++s) {
    a.set_grads(s % 3);  // repeating gradients: moments that build up
    b.set_grads(s % 3);
    ASSERT_TRUE(fp32->step(1e-3).ok());
    ASSERT_TRUE((*q)->step(1e-3).ok());
  }
  const std::vector<float> pa = a.values(0), pb = b.values(0);
  double diff = 0, moved = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    diff += std::pow(double(pb[i]) - pa[i], 2);
    moved += std::pow(double(pa[i]) - start[i], 2);
  }
  const double rel = std::sqrt(diff / moved);
  EXPECT_LT(rel, 0.05);  // measured 0.017; a first moment read with the unsigned book gives 4.3
  EXPECT_GT(rel, 0.0) << "the moments are quantized";
  EXPECT_EQ(a.values(1), b.values(1)) << "the bias keeps fp32 moments: same bits";
}

// A ZeRO rank's piece of a tensor starts on a block boundary (parallel/shard_layout.h): stepping the pieces
// separately gives the whole tensor's bits.
TEST(AdamW8bit, BlockAlignedPiecesStepAsTheWholeTensor) {
  Model whole, split;
  auto q_whole = AdamW8bit::create(whole_targets(whole.ps), config("adamw8bit"));
  model::Param* w = split.ps.all()[0].get();
  std::vector<OptimTarget> pieces;
  for (auto [off, n] : {std::pair<int64_t, int64_t>{0, 512}, {512, 768}, {1280, 4900 - 1280}})
    pieces.push_back({w, w->value.f32() + off, w->grad.f32() + off, n, off});
  auto q_split = AdamW8bit::create(pieces, config("adamw8bit"));
  ASSERT_TRUE(q_whole.ok() && q_split.ok());
  for (int s = 0; s < 5; ++s) {
    whole.set_grads(s);
    split.set_grads(s);
    ASSERT_TRUE((*q_whole)->step(1e-3).ok());
    ASSERT_TRUE((*q_split)->step(1e-3).ok());
  }
  EXPECT_EQ(whole.values(0), split.values(0));
}

TEST(AdamW8bit, StateIsAboutTwoBytesPerParameter) {
  model::ParamSet ps;
  ps.add("w", {256, 1024}, model::ParamKind::kWeight, {});
  ps.add("n", {1024}, model::ParamKind::kNorm, {});
  ASSERT_TRUE(ps.allocate().ok());
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kOptimizerState);
  const std::vector<OptimTarget> targets = whole_targets(ps);
  auto q = AdamW8bit::create(targets, config("adamw8bit"));
  ASSERT_TRUE(q.ok());
  const int64_t bytes = mt.current(MemCategory::kOptimizerState) - before;
  EXPECT_EQ(bytes, optimizer_state_bytes(targets[0], config("adamw8bit")) +
                       optimizer_state_bytes(targets[1], config("adamw8bit")));
  EXPECT_EQ(bytes, 2 * 256 * 1024 + 2 * 4 * 1024 + 8 * 1024);  // codes, absmax per block, the norm's fp32 moments
  EXPECT_LE(static_cast<double>(bytes) / ps.numel(), 2.1);
}

}  // namespace
}  // namespace memtrain::optim
