// Tensor storage sharing, views and the memory accounting behind them.
#include "core/tensor.h"

#include <gtest/gtest.h>

namespace memtrain {
namespace {

TEST(Tensor, AccountsBytesByCategoryAndReleasesThem) {
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kWorkspace);
  {
    auto t = Tensor::zeros({3, 5}, DType::kF32, MemCategory::kWorkspace);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(mt.current(MemCategory::kWorkspace) - before, 3 * 5 * 4);
    Tensor v = t->view({15});  // a view shares storage and adds no bytes
    EXPECT_EQ(mt.current(MemCategory::kWorkspace) - before, 60);
    EXPECT_TRUE(v.same_data(*t));
    for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(v.f32()[i], 0.0f);
  }
  EXPECT_EQ(mt.current(MemCategory::kWorkspace), before);
}

TEST(Tensor, SliceRowsPointsIntoTheParent) {
  auto t = Tensor::empty({4, 3}, DType::kF32, MemCategory::kWorkspace);
  ASSERT_TRUE(t.ok());
  for (int i = 0; i < 12; ++i) t->f32()[i] = static_cast<float>(i);
  Tensor s = t->slice_rows(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  EXPECT_EQ(s.f32()[0], 3.0f);
  EXPECT_EQ(s.f32()[5], 8.0f);
}

TEST(MemoryTracker, BudgetRejectsWithBreakdown) {
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t in_use = mt.snapshot().total_current;
  mt.set_budget(in_use + 1000);
  auto ok = Tensor::empty({100}, DType::kF32, MemCategory::kActivations);  // 400 bytes fit
  EXPECT_TRUE(ok.ok());
  auto bad = Tensor::empty({1000}, DType::kF32, MemCategory::kActivations);
  mt.set_budget(0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(bad.status().message().find("memory.budget"), std::string_view::npos);
  EXPECT_NE(bad.status().message().find("activations:"), std::string_view::npos) << bad.status();
}

TEST(MemoryTracker, PeakTracksTheHighWaterMark) {
  MemoryTracker& mt = MemoryTracker::host();
  mt.reset_peaks();
  const int64_t base = mt.current(MemCategory::kOptimizerState);
  {
    auto a = Tensor::empty({1000}, DType::kF32, MemCategory::kOptimizerState);
    auto b = Tensor::empty({500}, DType::kF32, MemCategory::kOptimizerState);
  }
  auto c = Tensor::empty({10}, DType::kF32, MemCategory::kOptimizerState);
  EXPECT_EQ(mt.peak(MemCategory::kOptimizerState), base + 6000);
  EXPECT_EQ(mt.current(MemCategory::kOptimizerState), base + 40);
}

}  // namespace
}  // namespace memtrain
