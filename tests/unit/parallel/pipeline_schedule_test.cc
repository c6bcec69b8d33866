// Pipeline schedules as data, checked by running them in the simulator: every list is complete and consistent
// (each forward after its input, each backward after its forward and output gradient, each send received, no
// deadlock), the activations in flight per rank equal each schedule's known bound, and the bubble of the simulated
// timeline equals the closed forms: (p-1)/(m+p-1) for GPipe and 1F1B, (p-1)/(vm+p-1) for interleaved with chunks
// of 1/v the cost, (p-1)/(3m+p-1) for ZB-H1 with equal forward, input- and weight-gradient costs. The simulator
// itself is checked on lists broken on purpose.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "parallel/parallel_config.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_simulator.h"

namespace memtrain::parallel {
namespace {

PipelineSchedule make(ScheduleKind kind, int p, int m, int v = 1) {
  auto s = make_pipeline_schedule({kind, p, m, v});
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

std::string listing(const std::vector<PipeAction>& actions) {
  std::string out;
  for (const PipeAction& a : actions) out += (out.empty() ? "" : " ") + describe(a);
  return out;
}

TEST(PipelineSchedule, OneFOneBOnTwoRanksIsMegatronsOrder) {
  const PipelineSchedule s = make(ScheduleKind::kOneFOneB, 2, 3);
  EXPECT_EQ(listing(s.actions[0]), "F0 sA0>1 F1 sA1>1 rG0<1 B0 F2 sA2>1 rG1<1 B1 rG2<1 B2");
  EXPECT_EQ(listing(s.actions[1]), "rA0<0 F0 B0 sG0>0 rA1<0 F1 B1 sG1>0 rA2<0 F2 B2 sG2>0");
}

TEST(PipelineSchedule, GPipeAndOneFOneBBubbleAndInFlight) {
  for (int p : {1, 2, 3, 4, 8}) {
    for (int m : {1, 2, 4, 7, 16}) {
      SCOPED_TRACE(::testing::Message() << "p=" << p << " m=" << m);
      const double bubble = double(p - 1) / (m + p - 1);
      auto gpipe = simulate_pipeline(make(ScheduleKind::kGPipe, p, m));
      ASSERT_TRUE(gpipe.ok()) << gpipe.status();
      EXPECT_NEAR(gpipe->bubble_fraction, bubble, 1e-12);
      for (int r = 0; r < p; ++r) EXPECT_EQ(gpipe->peak_in_flight[r], m);
      auto f1b1 = simulate_pipeline(make(ScheduleKind::kOneFOneB, p, m));
      ASSERT_TRUE(f1b1.ok()) << f1b1.status();
      EXPECT_NEAR(f1b1->bubble_fraction, bubble, 1e-12);
      EXPECT_DOUBLE_EQ(f1b1->makespan, 3.0 * (m + p - 1));
      for (int r = 0; r < p; ++r) EXPECT_EQ(f1b1->peak_in_flight[r], std::min(p - r, m)) << "rank " << r;
    }
  }
}

TEST(PipelineSchedule, InterleavedShrinksTheBubbleByTheChunks) {
  for (int p : {1, 2, 4}) {
    for (int v : {2, 3}) {
      for (int m : {p, 2 * p, 4 * p}) {
        SCOPED_TRACE(::testing::Message() << "p=" << p << " v=" << v << " m=" << m);
        const PipelineSchedule s = make(ScheduleKind::kInterleaved, p, m, v);
        // A chunk holds 1/v of the layers: 1/v of a stage's cost.
        auto tl = simulate_pipeline(s, {1.0 / v, 1.0 / v, 1.0 / v});
        ASSERT_TRUE(tl.ok()) << tl.status();
        const int total = m * v;
        if (m > p) {
          EXPECT_NEAR(tl->bubble_fraction, double(p - 1) / (v * m + p - 1), 1e-9);
        }
        auto f1b1 = simulate_pipeline(make(ScheduleKind::kOneFOneB, p, m));
        if (p > 1) {
          EXPECT_LT(tl->bubble_fraction, f1b1->bubble_fraction);
        }
        for (int r = 0; r < p; ++r) {
          const int warmup = m == p ? total : 2 * (p - r - 1) + (v - 1) * p;
          EXPECT_EQ(tl->peak_in_flight[r], std::min(warmup + 1, total)) << "rank " << r;
        }
      }
    }
  }
}

TEST(PipelineSchedule, ZeroBubbleFillsTheBubbleWithWeightGradients) {
  for (int p : {1, 2, 4, 8}) {
    for (int m : {1, 2, 4, 8, 16, 24}) {
      SCOPED_TRACE(::testing::Message() << "p=" << p << " m=" << m);
      const PipelineSchedule s = make(ScheduleKind::kZeroBubble, p, m);
      auto tl = simulate_pipeline(s);
      ASSERT_TRUE(tl.ok()) << tl.status();
      // No rank holds more than 1F1B's first rank does.
      for (int r = 0; r < p; ++r) EXPECT_EQ(tl->peak_in_flight[r], std::min(p, m)) << "rank " << r;
      auto f1b1 = simulate_pipeline(make(ScheduleKind::kOneFOneB, p, m));
      if (m >= p) {
        EXPECT_NEAR(tl->bubble_fraction, double(p - 1) / (3 * m + p - 1), 1e-12);
      }
      if (p > 1) {
        EXPECT_LT(tl->bubble_fraction, f1b1->bubble_fraction);
      }
      // Every backward is split: input-gradient halves, then (later) the weight-gradient halves.
      for (const auto& list : s.actions) {
        const auto whole = [](const PipeAction& a) { return a.op == PipeOp::kBackward; };
        EXPECT_EQ(std::count_if(list.begin(), list.end(), whole), 0);
      }
    }
  }
}

// What each backward finds held on its rank, counted independently of the simulator: walking the rank's own list,
// per chunk the forwards not yet backward and the input halves whose weight half has not run. The largest total
// is the peak in flight; only zero bubble leaves weight halves waiting.
TEST(PipelineSchedule, HeldAtBackwardCountsWhatTheListHolds) {
  for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::kOneFOneB, ScheduleKind::kInterleaved,
                            ScheduleKind::kZeroBubble}) {
    for (int p : {2, 4}) {
      const int v = kind == ScheduleKind::kInterleaved ? 2 : 1, m = 8;
      const PipelineSchedule s = make(kind, p, m, v);
      auto tl = simulate_pipeline(s);
      ASSERT_TRUE(tl.ok()) << tl.status();
      for (int r = 0; r < p; ++r) {
        SCOPED_TRACE(::testing::Message() << schedule_kind_name(kind) << " p=" << p << " rank " << r);
        std::vector<PipelineTimeline::Held> expect;
        std::vector<int> forwarded(v), awaiting(v);
        int most = 0;
        for (const PipeAction& a : s.actions[r]) {
          if (a.op == PipeOp::kForward) ++forwarded[a.chunk];
          if (a.op == PipeOp::kBackward || a.op == PipeOp::kBackwardInput) {
            expect.push_back({a.chunk, forwarded, awaiting});
            int total = 0;
            for (int c = 0; c < v; ++c) total += forwarded[c] + awaiting[c];
            most = std::max(most, total);
            --forwarded[a.chunk];
            if (a.op == PipeOp::kBackwardInput) ++awaiting[a.chunk];
          }
          if (a.op == PipeOp::kBackwardWeight) --awaiting[a.chunk];
        }
        ASSERT_EQ(tl->held_at_backward[r].size(), expect.size());
        for (size_t i = 0; i < expect.size(); ++i) {
          const PipelineTimeline::Held& h = tl->held_at_backward[r][i];
          EXPECT_EQ(h.chunk, expect[i].chunk) << i;
          EXPECT_EQ(h.forwarded, expect[i].forwarded) << i;
          EXPECT_EQ(h.awaiting_weight, expect[i].awaiting_weight) << i;
          if (kind != ScheduleKind::kZeroBubble) EXPECT_EQ(expect[i].awaiting_weight, std::vector<int>(v, 0));
        }
        EXPECT_EQ(most, tl->peak_in_flight[r]);
        EXPECT_EQ(static_cast<int>(expect.size()), m * v);
      }
    }
  }
}

TEST(PipelineSchedule, ShapesThatDoNotFitAreErrors) {
  auto bad_m = make_pipeline_schedule({ScheduleKind::kInterleaved, 4, 6, 2});
  ASSERT_FALSE(bad_m.ok());
  EXPECT_NE(bad_m.status().message().find("6 micro-batches are not a multiple of the 4"), std::string::npos);
  EXPECT_FALSE(make_pipeline_schedule({ScheduleKind::kInterleaved, 2, 4, 1}).ok());
  auto chunks = make_pipeline_schedule({ScheduleKind::kOneFOneB, 2, 4, 2});
  ASSERT_FALSE(chunks.ok());
  EXPECT_NE(chunks.status().message().find("interleaved"), std::string::npos);
  EXPECT_EQ(*parse_schedule_kind("zb-h1"), ScheduleKind::kZeroBubble);
  EXPECT_FALSE(parse_schedule_kind("1f2b").ok());
}

// parallel.pp_schedule names a schedule the trainer runs.
TEST(PipelineSchedule, ConfigNamesATrainableSchedule) {
  ParallelConfig cfg;
  for (const char* ok : {"gpipe", "1f1b", "zb-h1"}) {
    cfg.pp_schedule = ok;
    EXPECT_TRUE(cfg.validate().ok()) << ok;
  }
  cfg.pp_schedule = "interleaved";
  EXPECT_NE(cfg.validate().message().find("parallel.pp_chunks: 1 with pp_schedule"), std::string::npos);
  cfg.pp_chunks = 2;
  EXPECT_TRUE(cfg.validate().ok());
  cfg.pp_schedule = "1f1b";
  EXPECT_FALSE(cfg.validate().ok()) << "more than one chunk needs the interleaved schedule";
  cfg.pp_chunks = 1;
  cfg.pp_schedule = "zb-h1";
  EXPECT_TRUE(cfg.validate().ok());
  cfg.pp_schedule = "1f2b";
  EXPECT_NE(cfg.validate().message().find("unknown pipeline schedule \"1f2b\""), std::string::npos);
}

// The simulator must reject what an executor would hang on or compute wrongly.
TEST(PipelineSimulator, RejectsBrokenLists) {
  auto expect_error = [](PipelineSchedule s, const std::string& why) {
    auto tl = simulate_pipeline(s);
    ASSERT_FALSE(tl.ok()) << why;
    EXPECT_NE(tl.status().message().find(why), std::string::npos) << tl.status();
  };
  const PipelineSchedule good = make(ScheduleKind::kOneFOneB, 2, 3);
  ASSERT_TRUE(simulate_pipeline(good).ok());

  PipelineSchedule s = good;  // rank 1 runs backward 0 before forward 0
  std::swap(s.actions[1][1], s.actions[1][2]);
  expect_error(s, "before its forward");
  s = good;  // rank 1 forgets to receive micro-batch 0's activation
  s.actions[1].erase(s.actions[1].begin());
  expect_error(s, "its input has not arrived");
  s = good;  // rank 0 never sends micro-batch 2's activation: rank 1 waits forever
  s.actions[0].erase(s.actions[0].begin() + 7);
  expect_error(s, "rank 1 waits at rA2<0");
  s = good;  // rank 0 waits for gradient 0 before sending activation 0: each waits for the other
  std::rotate(s.actions[0].begin(), s.actions[0].begin() + 4, s.actions[0].begin() + 5);
  expect_error(s, "deadlock: rank 0 waits at rG0<1; rank 1 waits at rA0<0");
  s = good;  // rank 0 runs backward 0 without receiving its output gradient
  s.actions[0].erase(s.actions[0].begin() + 4);
  expect_error(s, "its output gradient has not arrived");
  s = good;  // micro-batch 2 stops after rank 0's forward: its activation is sent and never received
  s.actions[0].resize(10);
  s.actions[1].resize(8);
  expect_error(s, "rank 0 sends micro-batch 2 to stage 1, which never receives it");
  s = good;  // forward 0 twice on rank 0
  s.actions[0].insert(s.actions[0].begin() + 2, PipeAction{PipeOp::kForward, 0, 0});
  expect_error(s, "runs twice");
}

}  // namespace
}  // namespace memtrain::parallel
