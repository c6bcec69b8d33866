// PagedBuffer: committed ranges count in the tracker under the budget and hold what is written; decommitted ranges
// stop counting and read back as zeros at the same addresses; views keep the buffer alive.
#include "core/paged_buffer.h"

#include <gtest/gtest.h>

namespace memtrain {
namespace {

constexpr int64_t kPage = PagedBuffer::kPage;

TEST(PagedBuffer, CommitCountsDecommitFreesAndTheAddressStays) {
  MemoryTracker& mem = MemoryTracker::host();
  const int64_t before = mem.current(MemCategory::kParameters);
  auto buf = PagedBuffer::create(3 * kPage + 5, MemCategory::kParameters, "test pages");
  ASSERT_TRUE(buf.ok()) << buf.status();
  PagedBuffer& b = **buf;
  EXPECT_EQ(b.bytes(), 4 * kPage);
  EXPECT_EQ(mem.current(MemCategory::kParameters), before);  // addresses only
  ASSERT_TRUE(b.commit(kPage, 2 * kPage).ok());
  EXPECT_EQ(mem.current(MemCategory::kParameters) - before, 2 * kPage);
  EXPECT_EQ(b.committed_bytes(), 2 * kPage);
  float* p = reinterpret_cast<float*>(b.data() + kPage);
  for (int i = 0; i < 2 * kPage / 4; ++i) p[i] = static_cast<float>(i + 1);
  b.decommit(2 * kPage, kPage);  // the second page goes, the first keeps its values
  EXPECT_EQ(mem.current(MemCategory::kParameters) - before, kPage);
  EXPECT_TRUE(b.is_committed(kPage));
  EXPECT_FALSE(b.is_committed(2 * kPage));
  EXPECT_EQ(p[kPage / 4 - 1], static_cast<float>(kPage / 4));
  ASSERT_TRUE(b.commit(2 * kPage, kPage).ok());
  for (int i = kPage / 4; i < 2 * kPage / 4; ++i) ASSERT_EQ(p[i], 0.0f) << i;  // the OS's fresh page
  buf->reset();
  EXPECT_EQ(mem.current(MemCategory::kParameters), before);
}

TEST(PagedBuffer, CommitBeyondTheBudgetFailsAndCountsNothing) {
  MemoryTracker& mem = MemoryTracker::host();
  auto buf = PagedBuffer::create(64 * kPage, MemCategory::kParameters, "budgeted pages");
  ASSERT_TRUE(buf.ok());
  const int64_t used = mem.snapshot().total_current;
  mem.set_budget(used + 8 * kPage);
  absl::Status st = (*buf)->commit(0, 16 * kPage);
  mem.set_budget(0);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("budgeted pages"), std::string::npos) << st;
  EXPECT_EQ((*buf)->committed_bytes(), 0);
  EXPECT_EQ(mem.snapshot().total_current, used);
}

TEST(PagedBuffer, AViewKeepsTheBufferAlive) {
  auto buf = PagedBuffer::create(kPage, MemCategory::kSwap, "viewed pages");
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE((*buf)->commit(0, kPage).ok());
  Tensor v = (*buf)->view(0, {kPage / 4}, DType::kF32);
  v.f32()[3] = 7.0f;
  std::weak_ptr<PagedBuffer> weak = *buf;
  buf->reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(v.f32()[3], 7.0f);
  EXPECT_EQ(v.category(), MemCategory::kSwap);
  v = Tensor();
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace memtrain
