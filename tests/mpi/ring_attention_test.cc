// Ring attention over all the world's ranks (the cp group) against the single-process attention of the whole
// sequence: causal with load balancing (two chunks per rank) and without (one chunk), the full mask, chunks that
// are not a multiple of the kernel's 64-token block, one token per rank, and grouped-query heads. Every rank builds
// the same global inputs, runs the ring on its chunks, and compares its rows of the output, log-sum-exp and
// gradients with the single-process kernels' rows. The ring changes only the order in which key blocks are merged,
// so the bound is fp32 rounding: 1e-5 relative (measured ~1e-7).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu/attention.h"
#include "core/memory.h"
#include "model/ring_attention.h"
#include "tests/mpi/mpi_test_env.h"

namespace memtrain {
namespace {
using parallel::testing::world;

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  std::vector<float> x(n);
  for (float& e : x) e = dist(rng);
  return x;
}

// ||ring - reference|| / ||reference|| over the whole tensor: every rank's rows of the ring's result against the
// reference `whole` (one rank's rows alone can be all rounding noise: a query that sees one key has dq = 0).
double relative_difference(const std::vector<float>& mine, const std::vector<float>& my_reference,
                           const std::vector<float>& whole) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < mine.size(); ++i) {
    const double d = double(mine[i]) - my_reference[i];
    diff += d * d;
  }
  for (float x : whole) ref += double(x) * x;
  std::vector<double> all(world().comm().size());
  EXPECT_TRUE(world().comm().all_gather(&diff, all.data(), sizeof(double), DType::kU8).ok());
  diff = 0;
  for (double d : all) diff += d;
  return std::sqrt(diff / std::max(ref, 1e-300));
}

struct RingCase {
  int64_t sequences, T, H, Hkv, D;  // T: the whole sequence
  bool causal, balanced;
};

std::string describe(const RingCase& c) {
  return "B=" + std::to_string(c.sequences) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
         " Hkv=" + std::to_string(c.Hkv) + (c.causal ? " causal" : " full") + (c.balanced ? " balanced" : "");
}

// Rows of a (sequences, T, width) tensor -> this rank's chunk-major (slots * sequences, c, width) rows, and back.
struct Chunks {
  model::ContextParallel cp;
  int64_t sequences, T, c;
  std::vector<float> take(const std::vector<float>& whole, int64_t width) const {
    std::vector<float> local(cp.slots * sequences * c * width);
    for (int j = 0; j < cp.slots; ++j)
      for (int64_t b = 0; b < sequences; ++b)
        for (int64_t t = 0; t < c; ++t)
          std::copy_n(&whole[(b * T + cp.chunk_of(cp.rank, j) * c + t) * width], width,
                      &local[((j * sequences + b) * c + t) * width]);
    return local;
  }
  // lse (sequences, H, T) -> (slots * sequences, H, c)
  std::vector<float> take_stats(const std::vector<float>& whole, int64_t H) const {
    std::vector<float> local(cp.slots * sequences * H * c);
    for (int j = 0; j < cp.slots; ++j)
      for (int64_t b = 0; b < sequences; ++b)
        for (int64_t h = 0; h < H; ++h)
          std::copy_n(&whole[(b * H + h) * T + cp.chunk_of(cp.rank, j) * c], c,
                      &local[((j * sequences + b) * H + h) * c]);
    return local;
  }
};

TEST(MpiRingAttention, MatchesTheSingleProcessAttention) {
  parallel::Communicator& comm = world().comm();
  const int p = comm.size();
  const RingCase cases[] = {
      {2, 2 * p * 50, 4, 2, 16, true, true},    // chunks of 50: below and not a multiple of the 64-token block
      {1, 2 * p * 80, 2, 2, 32, true, true},    // chunks of 80: two kernel blocks, the second partial
      {2, p * 70, 4, 1, 16, true, false},       // one chunk per rank
      {2, p * 60, 4, 2, 16, false, false},      // full mask
      {1, 2 * p * 40, 2, 1, 8, false, true},    // full mask, two chunks per rank
      {3, p, 2, 1, 8, true, false},             // one token per rank
      {2, p, 2, 2, 8, false, false},
  };
  ThreadPool& pool = ThreadPool::global();
  uint32_t seed = 1;
  for (const RingCase& rc : cases) {
    SCOPED_TRACE(describe(rc));
    const int64_t qw = rc.H * rc.D, kw = rc.Hkv * rc.D, n = rc.sequences * rc.T;
    const std::vector<float> q = random_floats(n * qw, seed++), k = random_floats(n * kw, seed++),
                             v = random_floats(n * kw, seed++), dout = random_floats(n * qw, seed++);
    // The single process: the whole sequence in one kernel call.
    std::vector<float> out(n * qw), lse(rc.sequences * rc.H * rc.T, -std::numeric_limits<float>::infinity());
    std::vector<float> dq(n * qw, 0.0f), dk(n * kw, 0.0f), dv(n * kw, 0.0f);
    if (rc.causal) {
      cpu::attention_forward(q.data(), qw, k.data(), kw, v.data(), kw, rc.sequences, rc.T, rc.H, rc.Hkv, rc.D,
                             out.data(), qw, lse.data(), pool);
      cpu::attention_backward(dout.data(), qw, q.data(), qw, k.data(), kw, v.data(), kw, out.data(), qw, lse.data(),
                              rc.sequences, rc.T, rc.H, rc.Hkv, rc.D, dq.data(), qw, dk.data(), kw, dv.data(), kw,
                              pool);
    } else {
      const cpu::AttentionDims dims{rc.sequences, rc.T, rc.T, rc.H, rc.Hkv, rc.D, cpu::AttentionMask::kFull};
      cpu::attention_forward_merge(q.data(), qw, k.data(), kw, v.data(), kw, dims, out.data(), qw, lse.data(), pool);
      std::vector<float> delta(lse.size());
      cpu::attention_delta(dout.data(), qw, out.data(), qw, rc.sequences, rc.T, rc.H, rc.D, delta.data(), pool);
      cpu::attention_backward_accumulate(dout.data(), qw, q.data(), qw, k.data(), kw, v.data(), kw, lse.data(),
                                         delta.data(), dims, dq.data(), qw, dk.data(), kw, dv.data(), kw, pool);
    }

    const model::ContextParallel cp = model::ContextParallel::over(comm, rc.balanced);
    const Chunks chunks{cp, rc.sequences, rc.T, rc.T / cp.chunks()};
    ASSERT_EQ(rc.T % cp.chunks(), 0);
    const std::vector<float> lq = chunks.take(q, qw), lk = chunks.take(k, kw), lv = chunks.take(v, kw),
                             ldout = chunks.take(dout, qw);
    const model::RingAttentionDims dims{cp.slots * rc.sequences, chunks.c, rc.H, rc.Hkv, rc.D, rc.causal};
    std::vector<float> lout(lq.size()), llse(cp.slots * rc.sequences * rc.H * chunks.c);
    std::vector<float> ldq(lq.size(), 9.0f), ldk(lk.size(), 9.0f), ldv(lv.size(), 9.0f);
    MemoryTracker& mem = MemoryTracker::host();
    mem.reset_peaks();
    ASSERT_TRUE(model::ring_attention_forward(cp, lq.data(), qw, lk.data(), kw, lv.data(), kw, dims, lout.data(), qw,
                                              llse.data()).ok());
    // The ring's buffers are what ring_attention_*_buffer_bytes say.
    EXPECT_EQ(mem.peak(MemCategory::kCommunication), model::ring_attention_forward_buffer_bytes(cp, dims));
    mem.reset_peaks();
    ASSERT_TRUE(model::ring_attention_backward(cp, ldout.data(), qw, lq.data(), qw, lk.data(), kw, lv.data(), kw,
                                               lout.data(), qw, llse.data(), dims, ldq.data(), qw, ldk.data(), kw,
                                               ldv.data(), kw).ok());
    EXPECT_LT(relative_difference(lout, chunks.take(out, qw), out), 1e-5);
    EXPECT_LT(relative_difference(llse, chunks.take_stats(lse, rc.H), lse), 1e-5);
    EXPECT_LT(relative_difference(ldq, chunks.take(dq, qw), dq), 1e-5);
    EXPECT_LT(relative_difference(ldk, chunks.take(dk, kw), dk), 1e-5);
    EXPECT_LT(relative_difference(ldv, chunks.take(dv, kw), dv), 1e-5);
    EXPECT_EQ(mem.peak(MemCategory::kCommunication), model::ring_attention_backward_buffer_bytes(cp, dims));
  }
}

// Bytes each rank sends: forward passes its key/value block cp - 1 times; backward passes it cp - 1 times and
// the block's gradient (the same size) cp times, the last hop bringing it home.
TEST(MpiRingAttention, SendsTheBlocksOnceAroundTheRing) {
  parallel::Communicator& comm = world().comm();
  const model::ContextParallel cp = model::ContextParallel::over(comm);
  const int64_t sequences = 2, c = 24, H = 4, Hkv = 2, D = 8;
  const model::RingAttentionDims dims{cp.slots * sequences, c, H, Hkv, D, true};
  const int64_t rows = dims.B * c;
  std::vector<float> q = random_floats(rows * H * D, 5), k = random_floats(rows * Hkv * D, 6),
                     v = random_floats(rows * Hkv * D, 7), out(q.size()), lse(dims.B * H * c), dq(q.size()),
                     dk(k.size()), dv(v.size());
  const int64_t block = 4 * 2 * rows * Hkv * D;
  const int64_t before = comm.bytes_sent();
  ASSERT_TRUE(model::ring_attention_forward(cp, q.data(), H * D, k.data(), Hkv * D, v.data(), Hkv * D, dims,
                                            out.data(), H * D, lse.data()).ok());
  EXPECT_EQ(comm.bytes_sent() - before, (cp.size - 1) * block);
  ASSERT_TRUE(model::ring_attention_backward(cp, q.data(), H * D, q.data(), H * D, k.data(), Hkv * D, v.data(),
                                             Hkv * D, out.data(), H * D, lse.data(), dims, dq.data(), H * D,
                                             dk.data(), Hkv * D, dv.data(), Hkv * D).ok());
  EXPECT_EQ(comm.bytes_sent() - before, (cp.size - 1) * block + (2 * cp.size - 1) * block);
}

}  // namespace
}  // namespace memtrain
