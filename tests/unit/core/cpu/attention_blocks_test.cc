// Attention split over key blocks (the pieces context parallelism's ring runs): the sequence is cut into chunks,
// each query chunk merges every key chunk it may see, one at a time and in a scrambled order, and the backward adds
// each pair's part. Checked against the naive float64 attention over the whole sequence, causal and full.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/attention.h"
#include "tests/unit/core/cpu/attention_reference.h"

namespace memtrain {
namespace {

using attention_ref::Dims;
using attention_ref::rel_err;

// Contiguous (B, T, heads, D) <-> chunk-major: chunk j is its own (B, c) batch, token (b, t) at row b * c + t.
std::vector<float> chunk_of(const std::vector<float>& x, const Dims& s, int64_t width, int64_t c, int64_t j) {
  std::vector<float> out(s.B * c * width);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < c; ++t)
      std::copy_n(&x[(b * s.T + j * c + t) * width], width, &out[(b * c + t) * width]);
  return out;
}
void put_chunk(std::vector<double>& x, const std::vector<float>& part, const Dims& s, int64_t width, int64_t c,
               int64_t j) {
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < c; ++t)
      std::copy_n(&part[(b * c + t) * width], width, &x[(b * s.T + j * c + t) * width]);
}

struct BlockCase {
  Dims s;
  int64_t chunk;  // divides T
  bool causal;
};

class AttentionBlocks : public ::testing::TestWithParam<BlockCase> {};

TEST_P(AttentionBlocks, MergedChunksMatchTheWholeAttention) {
  const BlockCase& bc = GetParam();
  const Dims& s = bc.s;
  const int64_t c = bc.chunk, n = s.T / c, qw = s.H * s.D, kw = s.Hkv * s.D;
  ThreadPool& pool = ThreadPool::global();
  const std::vector<float> q = attention_ref::random_floats(s.B * s.T * qw, 1.5f, 11);
  const std::vector<float> k = attention_ref::random_floats(s.B * s.T * kw, 1.5f, 12);
  const std::vector<float> v = attention_ref::random_floats(s.B * s.T * kw, 1.0f, 13);
  const std::vector<float> dout = attention_ref::random_floats(s.B * s.T * qw, 1.0f, 14);
  auto f64 = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };

  std::vector<std::vector<float>> qc, kc, vc, dc;
  for (int64_t j = 0; j < n; ++j) {
    qc.push_back(chunk_of(q, s, qw, c, j));
    kc.push_back(chunk_of(k, s, kw, c, j));
    vc.push_back(chunk_of(v, s, kw, c, j));
    dc.push_back(chunk_of(dout, s, qw, c, j));
  }
  // Key chunks visit each query chunk as a ring would: its own first, then the others in decreasing order (so
  // later ones are merged into a state that has already moved its maximum).
  auto visits = [&](int64_t i) {
    std::vector<std::pair<int64_t, cpu::AttentionMask>> v;
    for (int64_t step = 0; step < n; ++step) {
      const int64_t j = (i - step + n) % n;
      if (!bc.causal) v.push_back({j, cpu::AttentionMask::kFull});
      else if (j < i) v.push_back({j, cpu::AttentionMask::kFull});
      else if (j == i) v.push_back({j, cpu::AttentionMask::kCausal});
    }
    return v;
  };
  std::vector<double> out(s.B * s.T * qw), lse_all(s.B * s.H * s.T);
  std::vector<std::vector<float>> oc(n, std::vector<float>(s.B * c * qw, 7.0f));
  std::vector<std::vector<float>> lc(n, std::vector<float>(s.B * s.H * c, -std::numeric_limits<float>::infinity()));
  for (int64_t i = 0; i < n; ++i) {
    for (auto [j, mask] : visits(i)) {
      cpu::attention_forward_merge(qc[i].data(), qw, kc[j].data(), kw, vc[j].data(), kw,
                                   {s.B, c, c, s.H, s.Hkv, s.D, mask}, oc[i].data(), qw, lc[i].data(), pool);
    }
    put_chunk(out, oc[i], s, qw, c, i);
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t t = 0; t < c; ++t) lse_all[(b * s.H + h) * s.T + i * c + t] = lc[i][(b * s.H + h) * c + t];
  }
  std::vector<double> ref_out, ref_lse;
  attention_ref::ref_forward(s, f64(q), f64(k), f64(v), &ref_out, &ref_lse, bc.causal);
  EXPECT_LT(rel_err(out, ref_out), 5e-6);
  EXPECT_LT(rel_err(lse_all, ref_lse), 5e-6);

  std::vector<std::vector<float>> dqc(n, std::vector<float>(s.B * c * qw, 0.0f));
  std::vector<std::vector<float>> dkc(n, std::vector<float>(s.B * c * kw, 0.0f)), dvc = dkc;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> delta(s.B * s.H * c);
    cpu::attention_delta(dc[i].data(), qw, oc[i].data(), qw, s.B, c, s.H, s.D, delta.data(), pool);
    for (auto [j, mask] : visits(i)) {
      cpu::attention_backward_accumulate(dc[i].data(), qw, qc[i].data(), qw, kc[j].data(), kw, vc[j].data(), kw,
                                         lc[i].data(), delta.data(), {s.B, c, c, s.H, s.Hkv, s.D, mask},
                                         dqc[i].data(), qw, dkc[j].data(), kw, dvc[j].data(), kw, pool);
    }
  }
  std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
  for (int64_t j = 0; j < n; ++j) {
    put_chunk(dq, dqc[j], s, qw, c, j);
    put_chunk(dk, dkc[j], s, kw, c, j);
    put_chunk(dv, dvc[j], s, kw, c, j);
  }
  std::vector<double> rdq, rdk, rdv;
  attention_ref::ref_backward(s, f64(q), f64(k), f64(v), f64(dout), &rdq, &rdk, &rdv, bc.causal);
  EXPECT_LT(rel_err(dq, rdq), 2e-5);
  EXPECT_LT(rel_err(dk, rdk), 2e-5);
  EXPECT_LT(rel_err(dv, rdv), 2e-5);
}

// Chunks shorter than, not a multiple of, and longer than the kernel's 64-token blocks; one-token chunks; GQA.
INSTANTIATE_TEST_SUITE_P(Chunks, AttentionBlocks,
                         ::testing::Values(BlockCase{{2, 150, 4, 2, 16}, 50, true},
                                           BlockCase{{2, 150, 4, 2, 16}, 50, false},
                                           BlockCase{{1, 200, 2, 1, 32}, 100, true},
                                           BlockCase{{1, 256, 2, 2, 16}, 128, false},
                                           BlockCase{{2, 4, 2, 1, 8}, 1, true},
                                           BlockCase{{1, 6, 3, 3, 8}, 1, false}));

// With one chunk the merge and accumulate forms are the whole attention: bitwise what the one-call kernels give.
TEST(AttentionBlocksOneChunk, BitwiseTheSingleCallKernels) {
  const Dims s{2, 100, 4, 2, 16};
  const int64_t qw = s.H * s.D, kw = s.Hkv * s.D;
  ThreadPool& pool = ThreadPool::global();
  const std::vector<float> q = attention_ref::random_floats(s.B * s.T * qw, 1.0f, 21);
  const std::vector<float> k = attention_ref::random_floats(s.B * s.T * kw, 1.0f, 22);
  const std::vector<float> v = attention_ref::random_floats(s.B * s.T * kw, 1.0f, 23);
  const std::vector<float> dout = attention_ref::random_floats(s.B * s.T * qw, 1.0f, 24);
  std::vector<float> out1(q.size()), lse1(s.B * s.H * s.T), dq1(q.size()), dk1(k.size()), dv1(v.size());
  cpu::attention_forward(q.data(), qw, k.data(), kw, v.data(), kw, s.B, s.T, s.H, s.Hkv, s.D, out1.data(), qw,
                         lse1.data(), pool);
  cpu::attention_backward(dout.data(), qw, q.data(), qw, k.data(), kw, v.data(), kw, out1.data(), qw, lse1.data(),
                          s.B, s.T, s.H, s.Hkv, s.D, dq1.data(), qw, dk1.data(), kw, dv1.data(), kw, pool);
  std::vector<float> out2(q.size()), lse2(lse1.size(), -std::numeric_limits<float>::infinity());
  const cpu::AttentionDims dims{s.B, s.T, s.T, s.H, s.Hkv, s.D, cpu::AttentionMask::kCausal};
  cpu::attention_forward_merge(q.data(), qw, k.data(), kw, v.data(), kw, dims, out2.data(), qw, lse2.data(), pool);
  std::vector<float> delta(lse1.size()), dq2(q.size(), 0.0f), dk2(k.size(), 0.0f), dv2(v.size(), 0.0f);
  cpu::attention_delta(dout.data(), qw, out2.data(), qw, s.B, s.T, s.H, s.D, delta.data(), pool);
  cpu::attention_backward_accumulate(dout.data(), qw, q.data(), qw, k.data(), kw, v.data(), kw, lse2.data(),
                                     delta.data(), dims, dq2.data(), qw, dk2.data(), kw, dv2.data(), kw, pool);
  EXPECT_EQ(out1, out2);
  EXPECT_EQ(lse1, lse2);
  EXPECT_EQ(dq1, dq2);
  EXPECT_EQ(dk1, dk2);
  EXPECT_EQ(dv1, dv2);
}

}  // namespace
}  // namespace memtrain
