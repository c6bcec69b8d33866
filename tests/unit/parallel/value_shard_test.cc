// ValueShard with a tier: units go out and come back bit for bit at the same addresses, only their pages count
// while in, and a unit is written only when its values changed since its last write. The tier here is a plain
// copying one that counts its writes (offload/'s tiers have their own tests).
#include "parallel/value_shard.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

namespace memtrain::parallel {
namespace {

class CopyTier final : public SwapTier {
 public:
  absl::string_view name() const override { return "copy"; }
  absl::StatusOr<uint64_t> write(const Tensor& t) override {
    copies_[++next_] = std::vector<char>(static_cast<char*>(t.raw()), static_cast<char*>(t.raw()) + t.nbytes());
    written_ += static_cast<int64_t>(t.nbytes());
    ++writes;
    return next_;
  }
  absl::Status read(uint64_t ticket, const Tensor& into) override {
    const std::vector<char>& c = copies_.at(ticket);
    EXPECT_EQ(c.size(), into.nbytes());
    std::memcpy(into.raw(), c.data(), c.size());
    read_ += static_cast<int64_t>(c.size());
    return absl::OkStatus();
  }
  absl::Status wait(uint64_t) override { return absl::OkStatus(); }
  void release(uint64_t ticket) override { copies_.erase(ticket); }
  int64_t bytes_written() const override { return written_; }
  int64_t bytes_read() const override { return read_; }
  size_t held() const { return copies_.size(); }
  int writes = 0;

 private:
  std::map<uint64_t, std::vector<char>> copies_;
  uint64_t next_ = 0;
  int64_t written_ = 0, read_ = 0;
};

TEST(ValueShard, UnitsGoOutAndComeBackAtTheSameAddresses) {
  const ShardLayout layout({{1000, 24}, {5000}, {}, {300, 300, 300}}, 2);  // unit 2: no tensor, a padding slice
  CopyTier tier;
  MemoryTracker& mem = MemoryTracker::host();
  const int64_t before = mem.current(MemCategory::kParameters);
  auto shard = ValueShard::create(layout, &tier);
  ASSERT_TRUE(shard.ok()) << shard.status();
  ValueShard& s = **shard;
  EXPECT_EQ(mem.current(MemCategory::kParameters), before);  // out at the start
  ASSERT_TRUE(s.finish_in(1).ok());
  for (int64_t i = 0; i < layout.unit_slice(1); ++i) ASSERT_EQ(s.unit_values(1)[i], 0.0f);  // as zeros
  ASSERT_TRUE(s.finish_out(1).ok());
  EXPECT_EQ(tier.writes, 0);
  ASSERT_TRUE(s.all_in(/*will_write=*/true).ok());
  int64_t all = 0;
  for (int u = 0; u < 4; ++u) all += ValueShard::unit_bytes(layout, u);
  EXPECT_EQ(mem.current(MemCategory::kParameters) - before, all);
  std::vector<float*> where;
  for (int u = 0; u < 4; ++u) {
    where.push_back(s.unit_values(u));
    for (int64_t i = 0; i < layout.unit_slice(u); ++i) where[u][i] = static_cast<float>(u * 100000 + i) + 0.5f;
  }
  ASSERT_TRUE(s.all_out().ok());
  EXPECT_EQ(mem.current(MemCategory::kParameters), before);
  EXPECT_EQ(tier.writes, 4);
  ASSERT_TRUE(s.finish_in(1).ok());
  EXPECT_EQ(mem.current(MemCategory::kParameters) - before, ValueShard::unit_bytes(layout, 1));
  EXPECT_EQ(s.unit_values(1), where[1]);
  for (int64_t i = 0; i < layout.unit_slice(1); ++i) ASSERT_EQ(where[1][i], 100000 + i + 0.5f) << i;
  // Unchanged: out again without a write. Changed: written, and the new values come back.
  ASSERT_TRUE(s.finish_out(1).ok());
  EXPECT_EQ(tier.writes, 4);
  ASSERT_TRUE(s.finish_in(3).ok());
  s.mark_written(3);
  where[3][7] = -1.0f;
  ASSERT_TRUE(s.finish_out(3).ok());
  EXPECT_EQ(tier.writes, 5);
  EXPECT_EQ(tier.held(), 4u);  // the old copy of unit 3 was released
  ASSERT_TRUE(s.all_in(/*will_write=*/false).ok());
  EXPECT_EQ(where[3][7], -1.0f);
  EXPECT_EQ(where[0][layout.unit_slice(0) - 1], static_cast<float>(layout.unit_slice(0) - 1) + 0.5f);
  ASSERT_TRUE(s.all_out().ok());
  EXPECT_EQ(tier.writes, 5);
  shard->reset();
  EXPECT_EQ(tier.held(), 0u);
  EXPECT_EQ(mem.current(MemCategory::kParameters), before);
}

TEST(ValueShard, WithoutATierEverythingStaysIn) {
  const ShardLayout layout({{1000}, {5000}}, 1);
  auto shard = ValueShard::create(layout, nullptr);
  ASSERT_TRUE(shard.ok());
  EXPECT_FALSE((*shard)->offloaded());
  EXPECT_EQ((*shard)->unit_values(1) - (*shard)->unit_values(0), layout.unit_shard_pos(1));
  ASSERT_TRUE((*shard)->all_out().ok());
  (*shard)->unit_values(1)[4999] = 3.0f;  // still memory
  EXPECT_TRUE((*shard)->is_in(1));
}

}  // namespace
}  // namespace memtrain::parallel
