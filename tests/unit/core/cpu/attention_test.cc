// Blockwise causal attention checked against a naive float64 softmax attention, central finite differences, itself
// on 1 vs 2 threads (bitwise), and for scratch that stays linear in T.
#include "core/cpu/attention.h"
#include "tests/unit/core/cpu/attention_reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace memtrain {
namespace {

using attention_ref::Dims;
using attention_ref::gather;
using attention_ref::random_floats;
using attention_ref::ref_backward;
using attention_ref::ref_forward;
using attention_ref::rel_err;

// q, k, v (and their gradients) in one buffer: either GPT-2's fused (B, T, (H + 2 Hkv) D) c_attn layout, where all
// three share one token stride, or three contiguous tensors back to back. out gets a padded stride when fused, so
// ldo != H*D is exercised too.
struct Layout {
  int64_t q_off, k_off, v_off, ldq, ldk, ldv, ldo, size;
  Layout(const Dims& s, bool fused) {
    const int64_t n = s.B * s.T;
    if (fused) {
      ldq = ldk = ldv = (s.H + 2 * s.Hkv) * s.D;
      q_off = 0, k_off = s.H * s.D, v_off = (s.H + s.Hkv) * s.D;
      size = n * ldq;
      ldo = s.H * s.D + 5;
    } else {
      ldq = s.H * s.D, ldk = ldv = s.Hkv * s.D;
      q_off = 0, k_off = n * ldq, v_off = k_off + n * ldk;
      size = v_off + n * ldv;
      ldo = s.H * s.D;
    }
  }
};

// One forward + backward of the kernel on random inputs in the given layout, plus the same inputs in float64.
struct KernelRun {
  Dims s;
  Layout lay;
  std::vector<float> qkv, out, lse, dout, dqkv;
  KernelRun(const Dims& dims, bool fused, float amplitude, uint32_t seed)
      : s(dims), lay(dims, fused), qkv(random_floats(lay.size, amplitude, seed)),
        out(s.B * s.T * lay.ldo, 12345.0f), lse(s.B * s.H * s.T),
        dout(random_floats(s.B * s.T * lay.ldo, 1.0f, seed + 1)), dqkv(lay.size, 777.0f) {}
  void forward(ThreadPool& pool) {
    cpu::attention_forward(qkv.data() + lay.q_off, lay.ldq, qkv.data() + lay.k_off, lay.ldk, qkv.data() + lay.v_off,
                           lay.ldv, s.B, s.T, s.H, s.Hkv, s.D, out.data(), lay.ldo, lse.data(), pool);
  }
  void backward(ThreadPool& pool) {
    cpu::attention_backward(dout.data(), lay.ldo, qkv.data() + lay.q_off, lay.ldq, qkv.data() + lay.k_off, lay.ldk,
                            qkv.data() + lay.v_off, lay.ldv, out.data(), lay.ldo, lse.data(), s.B, s.T, s.H, s.Hkv,
                            s.D, dqkv.data() + lay.q_off, lay.ldq, dqkv.data() + lay.k_off, lay.ldk,
                            dqkv.data() + lay.v_off, lay.ldv, pool);
  }
  int64_t n() const { return s.B * s.T; }
  std::vector<double> q64() const { return gather(qkv.data() + lay.q_off, lay.ldq, n(), s.H * s.D); }
  std::vector<double> k64() const { return gather(qkv.data() + lay.k_off, lay.ldk, n(), s.Hkv * s.D); }
  std::vector<double> v64() const { return gather(qkv.data() + lay.v_off, lay.ldv, n(), s.Hkv * s.D); }
  std::vector<double> out64() const { return gather(out.data(), lay.ldo, n(), s.H * s.D); }
  std::vector<double> dout64() const { return gather(dout.data(), lay.ldo, n(), s.H * s.D); }
  std::vector<double> dq64() const { return gather(dqkv.data() + lay.q_off, lay.ldq, n(), s.H * s.D); }
  std::vector<double> dk64() const { return gather(dqkv.data() + lay.k_off, lay.ldk, n(), s.Hkv * s.D); }
  std::vector<double> dv64() const { return gather(dqkv.data() + lay.v_off, lay.ldv, n(), s.Hkv * s.D); }
};

struct Case {
  Dims s;
  bool fused;
  float amplitude;  // input std; 3 makes the softmax sharp, so the online max moves a lot between key blocks
};

std::string name(const Case& c) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "B=%ld T=%ld H=%ld Hkv=%ld D=%ld fused=%d amp=%g", long(c.s.B), long(c.s.T),
                long(c.s.H), long(c.s.Hkv), long(c.s.D), int(c.fused), double(c.amplitude));
  return buf;
}

// Tolerances: the float64 reference runs on the very same (fp32-exact) inputs, so the difference is the kernel's fp32
// rounding alone (dot products of up to T terms, a ~1 ulp exp); measured up to 4e-7 forward and 1e-6 backward, where
// dP - delta cancels. The bounds leave 10x headroom; a wrong mask, a missed rescale or a wrong kv head gives 1e-2+.
constexpr double kFwdTol = 5e-6;
constexpr double kBwdTol = 2e-5;

TEST(AttentionForward, MatchesFloat64Reference) {
  const Case cases[] = {
      {{2, 1, 2, 2, 16}, false, 1}, {{1, 7, 4, 2, 32}, true, 1},    {{2, 65, 4, 1, 64}, false, 1},
      {{1, 130, 4, 2, 128}, true, 1}, {{2, 130, 2, 1, 16}, false, 3}, {{1, 64, 3, 3, 32}, true, 1},
      {{1, 1024, 2, 1, 64}, true, 1},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE(name(c));
    KernelRun run(c.s, c.fused, c.amplitude, seed++);
    run.forward(ThreadPool::global());
    std::vector<double> out, lse;
    ref_forward(c.s, run.q64(), run.k64(), run.v64(), &out, &lse);
    EXPECT_LT(rel_err(run.out64(), out), kFwdTol);
    EXPECT_LT(rel_err(std::vector<double>(run.lse.begin(), run.lse.end()), lse), kFwdTol);
    for (int64_t r = 0; r < run.n(); ++r)  // the padding of a strided out stays untouched
      for (int64_t c2 = c.s.H * c.s.D; c2 < run.lay.ldo; ++c2) ASSERT_EQ(run.out[r * run.lay.ldo + c2], 12345.0f);
  }
}

// Central differences of L = sum(dout * out) on the float64 reference; with h = 1e-6 the truncation error (~h^2)
// and the cancellation error (~1e-16 / h) are both far below the fp32 kernel's own error.
TEST(AttentionBackward, MatchesFiniteDifferences) {
  const Case cases[] = {{{1, 5, 2, 1, 4}, false, 1}, {{2, 3, 2, 2, 8}, true, 1}, {{1, 70, 2, 1, 4}, true, 1}};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(name(c));
    KernelRun run(c.s, c.fused, c.amplitude, seed++);
    run.forward(ThreadPool::global());
    run.backward(ThreadPool::global());
    const std::vector<double> dout = run.dout64();
    std::vector<double> x[3] = {run.q64(), run.k64(), run.v64()};
    auto loss = [&] {
      std::vector<double> out, lse;
      ref_forward(c.s, x[0], x[1], x[2], &out, &lse);
      double l = 0;
      for (size_t i = 0; i < out.size(); ++i) l += dout[i] * out[i];
      return l;
    };
    std::vector<double> fd[3];
    for (int w = 0; w < 3; ++w) {
      for (size_t i = 0; i < x[w].size(); ++i) {
        const double keep = x[w][i], h = 1e-6;
        x[w][i] = keep + h;
        const double up = loss();
        x[w][i] = keep - h;
        const double down = loss();
        x[w][i] = keep;
        fd[w].push_back((up - down) / (2 * h));
      }
    }
    EXPECT_LT(rel_err(run.dq64(), fd[0]), kBwdTol);
    EXPECT_LT(rel_err(run.dk64(), fd[1]), kBwdTol);
    EXPECT_LT(rel_err(run.dv64(), fd[2]), kBwdTol);
    // The analytic float64 backward used on the larger shapes agrees with the differences to float64 precision.
    std::vector<double> dq, dk, dv;
    ref_backward(c.s, x[0], x[1], x[2], dout, &dq, &dk, &dv);
    EXPECT_LT(rel_err(dq, fd[0]), 1e-7);
    EXPECT_LT(rel_err(dk, fd[1]), 1e-7);
    EXPECT_LT(rel_err(dv, fd[2]), 1e-7);
  }
}

TEST(AttentionBackward, MatchesFloat64AnalyticBackward) {
  const Case cases[] = {
      {{1, 1, 1, 1, 16}, false, 1}, {{2, 7, 4, 4, 64}, true, 1},    {{1, 65, 2, 2, 128}, false, 1},
      {{2, 130, 4, 2, 32}, true, 1}, {{1, 130, 4, 1, 16}, false, 3}, {{1, 1024, 2, 1, 16}, true, 1},
  };
  uint32_t seed = 200;
  for (const Case& c : cases) {
    SCOPED_TRACE(name(c));
    KernelRun run(c.s, c.fused, c.amplitude, seed++);
    run.forward(ThreadPool::global());
    run.backward(ThreadPool::global());
    std::vector<double> dq, dk, dv;
    ref_backward(c.s, run.q64(), run.k64(), run.v64(), run.dout64(), &dq, &dk, &dv);
    EXPECT_LT(rel_err(run.dq64(), dq), kBwdTol);
    EXPECT_LT(rel_err(run.dk64(), dk), kBwdTol);
    EXPECT_LT(rel_err(run.dv64(), dv), kBwdTol);
  }
}

TEST(Attention, BitwiseSameWithOneAndTwoThreads) {
  const Dims s{2, 200, 4, 2, 32};
  ThreadPool one(1), two(2);
  KernelRun a(s, true, 1, 7), b(s, true, 1, 7);
  a.forward(one), a.backward(one);
  b.forward(two), b.backward(two);
  EXPECT_EQ(0, std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(a.dqkv.data(), b.dqkv.data(), a.dqkv.size() * sizeof(float)));  // dq, dk and dv
}

// A NaN must reach the output (so a diverging run shows a NaN loss) and only where causality allows: a NaN in key 3
// poisons queries 3.. and nothing before, a NaN in query 80 only that query.
TEST(Attention, NanReachesExactlyTheQueriesThatSeeIt) {
  const Dims s{1, 100, 1, 1, 16};
  KernelRun run(s, false, 1, 500);
  run.qkv[run.lay.k_off + 3 * run.lay.ldk] = NAN;
  run.qkv[run.lay.q_off + 80 * run.lay.ldq + 5] = NAN;
  run.forward(ThreadPool::global());
  for (int64_t t = 0; t < s.T; ++t) EXPECT_EQ(std::isnan(run.out[t * run.lay.ldo]), t >= 3) << "t=" << t;
  run.qkv[run.lay.k_off + 3 * run.lay.ldk] = 1.0f;
  run.forward(ThreadPool::global());
  for (int64_t t = 0; t < s.T; ++t) EXPECT_EQ(std::isnan(run.out[t * run.lay.ldo]), t == 80) << "t=" << t;
}

// Scratch must not grow like T^2: doubling T adds at most the O(T) per-head delta row of the backward.
TEST(Attention, ScratchGrowsLinearlyInT) {
  int64_t peak[2];
  for (int i = 0; i < 2; ++i) {
    const Dims s{1, 1024 << i, 1, 1, 16};
    KernelRun run(s, false, 1, 300);
    cpu::attention_reset_scratch_peak();
    run.forward(ThreadPool::global());
    run.backward(ThreadPool::global());
    peak[i] = cpu::attention_scratch_floats_peak();
    for (float x : run.dqkv) ASSERT_TRUE(std::isfinite(x));
  }
  EXPECT_LE(peak[1] - peak[0], 1024);
  EXPECT_LT(peak[1], 2048 * 2048 / 64);  // a T^2 score matrix would be 64x this
}

// Not a check: prints the cost at the GPT-2 small attention shape per layer (B=8, T=256, H=6, D=64, fused qkv).
TEST(Attention, ReportsTimeAtGpt2Shape) {
  const Dims s{8, 256, 6, 6, 64};
  KernelRun run(s, true, 1, 400);
  ThreadPool& pool = ThreadPool::global();
  run.forward(pool), run.backward(pool);  // warm up scratch and OpenBLAS
  double fwd = 1e9, bwd = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    run.forward(pool);
    const auto t1 = std::chrono::steady_clock::now();
    run.backward(pool);
    const auto t2 = std::chrono::steady_clock::now();
    fwd = std::min(fwd, std::chrono::duration<double, std::milli>(t1 - t0).count());
    bwd = std::min(bwd, std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::printf("[ attention ] B=8 T=256 H=6 D=64, %d threads: forward %.2f ms, backward %.2f ms (best of 5)\n",
              pool.size(), fwd, bwd);
  for (float x : run.out) ASSERT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace memtrain
