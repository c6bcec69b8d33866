// BatchSampler: windows recomputed by hand from the documented Philox rule, row-range splits, eval windows.
#include "data/batch_sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <set>

#include "core/philox.h"
#include "tests/unit/data/test_dir.h"

namespace memtrain {
namespace {

using data::BatchSampler;
using data::TokenShard;
using testing_util::TestDir;

// Token i is (i * 31 + 7) % 251, so a window's offset can be read back from its first tokens.
class BatchSamplerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_.resize(1000);
    for (size_t i = 0; i < tokens_.size(); ++i) tokens_[i] = static_cast<int32_t>((i * 31 + 7) % 251);
    ASSERT_TRUE(data::write_token_shard(dir_.file("t.bin"), tokens_, 256).ok());
    auto shard = TokenShard::open(dir_.file("t.bin"));
    ASSERT_TRUE(shard.ok()) << shard.status();
    shard_.emplace(std::move(shard).value());
  }
  std::vector<int32_t> fill(const BatchSampler& s, int64_t step, int64_t r0, int64_t r1, std::vector<int32_t>* y) {
    std::vector<int32_t> x((r1 - r0) * s.seq_len());
    y->assign(x.size(), -1);
    s.fill(step, r0, r1, x.data(), y->data());
    return x;
  }

  TestDir dir_;
  std::vector<int32_t> tokens_;
  std::optional<TokenShard> shard_;
};

TEST_F(BatchSamplerTest, RowsFollowThePhiloxRule) {
  const int64_t B = 4, T = 16;
  const BatchSampler s(*shard_, B, T, 1234, "train");
  ASSERT_TRUE(s.check().ok());
  std::vector<int32_t> y;
  const std::vector<int32_t> x = fill(s, 5, 0, B, &y);
  const PhiloxKey key = philox_key(1234, "train");
  for (int64_t r = 0; r < B; ++r) {
    const double u = philox_unit_double(key, 5 * B + r);
    const auto off = static_cast<int64_t>(std::floor(u * (1000 - T)));
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_EQ(x[r * T + t], tokens_[off + t]) << r << "," << t;
      EXPECT_EQ(y[r * T + t], tokens_[off + t + 1]) << r << "," << t;
    }
  }
}

TEST_F(BatchSamplerTest, SameArgumentsSameBatchOtherStepsDiffer) {
  const BatchSampler a(*shard_, 4, 16, 7, "train"), b(*shard_, 4, 16, 7, "train");
  std::vector<int32_t> ya, yb, y1, yv, ys;
  const auto xa = fill(a, 3, 0, 4, &ya);
  EXPECT_EQ(fill(b, 3, 0, 4, &yb), xa);
  EXPECT_EQ(yb, ya);
  EXPECT_NE(fill(a, 4, 0, 4, &y1), xa);
  EXPECT_NE(fill(BatchSampler(*shard_, 4, 16, 7, "val"), 3, 0, 4, &yv), xa);  // streams are independent
  EXPECT_NE(fill(BatchSampler(*shard_, 4, 16, 8, "train"), 3, 0, 4, &ys), xa);
}

TEST_F(BatchSamplerTest, RowRangesComposeToTheGlobalBatch) {
  const BatchSampler s(*shard_, 4, 16, 99, "train");
  for (int64_t step : {0, 1, 17}) {
    std::vector<int32_t> y_all, y_lo, y_hi, y_one;
    const auto all = fill(s, step, 0, 4, &y_all);
    auto lo = fill(s, step, 0, 2, &y_lo);
    const auto hi = fill(s, step, 2, 4, &y_hi);
    lo.insert(lo.end(), hi.begin(), hi.end());
    y_lo.insert(y_lo.end(), y_hi.begin(), y_hi.end());
    EXPECT_EQ(lo, all);
    EXPECT_EQ(y_lo, y_all);
    const auto row3 = fill(s, step, 3, 4, &y_one);  // a single row, as on a rank with one row
    EXPECT_EQ(row3, std::vector<int32_t>(all.begin() + 48, all.end()));
  }
}

TEST_F(BatchSamplerTest, TargetsAreInputsShiftedByOne) {
  const int64_t T = 32;
  const BatchSampler s(*shard_, 8, T, 5, "train");
  std::vector<int32_t> y;
  const auto x = fill(s, 2, 0, 8, &y);
  for (int64_t r = 0; r < 8; ++r) {
    for (int64_t t = 0; t + 1 < T; ++t) EXPECT_EQ(y[r * T + t], x[r * T + t + 1]);
    // The last target is the token after the window, i.e. the next one in the token sequence.
    EXPECT_EQ(y[r * T + T - 1], (x[r * T + T - 1] + 31) % 251);
  }
}

TEST_F(BatchSamplerTest, OffsetsCoverTheWholeShardAndStayInside) {
  // A shard of seq_len + 2 tokens has exactly two window starts; both must appear and nothing may overrun.
  std::vector<int32_t> tokens = {10, 11, 12, 13, 14, 15};
  ASSERT_TRUE(data::write_token_shard(dir_.file("tiny.bin"), tokens, 256).ok());
  auto tiny = TokenShard::open(dir_.file("tiny.bin"));
  ASSERT_TRUE(tiny.ok());
  const BatchSampler s(*tiny, 8, 4, 3, "train");
  ASSERT_TRUE(s.check().ok());
  std::set<int32_t> starts;
  for (int64_t step = 0; step < 20; ++step) {
    std::vector<int32_t> y;
    const auto x = fill(s, step, 0, 8, &y);
    for (int64_t r = 0; r < 8; ++r) starts.insert(x[r * 4]);
  }
  EXPECT_EQ(starts, (std::set<int32_t>{10, 11}));
}

TEST_F(BatchSamplerTest, CheckNamesTheSizes) {
  ASSERT_TRUE(data::write_token_shard(dir_.file("small.bin"), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 256).ok());
  auto small = TokenShard::open(dir_.file("small.bin"));
  ASSERT_TRUE(small.ok());
  EXPECT_TRUE(BatchSampler(*small, 2, 9, 0, "val").check().ok());  // 10 tokens = 9 + 1: just enough
  const absl::Status st = BatchSampler(*small, 2, 10, 0, "val").check();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  for (const char* part : {"small.bin", "holds 10 tokens", "val", "seq_len + 1 = 11"}) {
    EXPECT_NE(st.message().find(part), absl::string_view::npos) << part << " in " << st;
  }
  EXPECT_FALSE(BatchSampler(*small, 0, 4, 0, "val").check().ok());
}

TEST_F(BatchSamplerTest, EvalWindowsAreFixedAndWrap) {
  const int64_t B = 4, T = 100;
  const BatchSampler s(*shard_, B, T, 1, "val");
  EXPECT_EQ(s.eval_windows(), 9);  // (1000 - 1) / 100
  EXPECT_EQ(s.eval_batches(), 3);
  std::vector<int32_t> x(B * T), y(B * T), x2(B * T), y2(B * T);
  for (int64_t b = 0; b < 4; ++b) {
    s.fill_eval(b, x.data(), y.data());
    s.fill_eval(b, x2.data(), y2.data());
    EXPECT_EQ(x, x2);
    EXPECT_EQ(y, y2);
    for (int64_t r = 0; r < B; ++r) {
      const int64_t start = ((b * B + r) % 9) * T;  // window 9 wraps to window 0
      for (int64_t t = 0; t < T; ++t) {
        ASSERT_EQ(x[r * T + t], tokens_[start + t]) << b << "," << r;
        ASSERT_EQ(y[r * T + t], tokens_[start + t + 1]) << b << "," << r;
      }
    }
  }
  // Row ranges of an eval batch compose like the training ones.
  std::vector<int32_t> xr(2 * T), yr(2 * T);
  s.fill_eval(1, 2, 4, xr.data(), yr.data());
  s.fill_eval(1, x.data(), y.data());
  EXPECT_EQ(xr, std::vector<int32_t>(x.begin() + 2 * T, x.end()));
  EXPECT_EQ(yr, std::vector<int32_t>(y.begin() + 2 * T, y.end()));
}

}  // namespace
}  // namespace memtrain
