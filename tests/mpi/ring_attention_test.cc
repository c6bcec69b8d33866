// Ring attention over all the world's ranks (the cp group) against the single-process attention of the whole
// sequence: causal with load balancing (two chunks per rank) and without (one chunk), the full mask, chunks that
// are not a multiple of the kernel's 64-token block, one token per rank, and grouped-query heads. Every rank builds
// the same global inputs, runs the ring on its chunks, and compares its rows of the output, log-sum-exp and
// gradients with the single-process kernels' rows. The ring changes only the order in which key blocks are merged,
// so the bound is fp32 rounding: 1e-5 relative (measured ~1e-7). Unified sequence parallelism (all-to-all groups
// around the ring, model/ulysses.h) is held to the same bound.
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

// Rows of a (sequences, T, width) tensor -> this rank's chunk-major (slots * sequences, c, width) rows, and back;
// with an all-to-all part, c is a piece of a ring chunk (context_parallel.h).
struct Chunks {
  model::ContextParallel cp;
  int64_t sequences, T, c;
  int64_t first(int j) const { return (cp.chunk_of(cp.rank, j) * cp.a2a_size + cp.a2a_rank) * c; }
  std::vector<float> take(const std::vector<float>& whole, int64_t width) const {
    std::vector<float> local(cp.slots * sequences * c * width);
    for (int j = 0; j < cp.slots; ++j)
      for (int64_t b = 0; b < sequences; ++b)
        for (int64_t t = 0; t < c; ++t)
          std::copy_n(&whole[(b * T + first(j) + t) * width], width, &local[((j * sequences + b) * c + t) * width]);
    return local;
  }
  // lse (sequences, H, T) -> (slots * sequences, H, c)
  std::vector<float> take_stats(const std::vector<float>& whole, int64_t H) const {
    std::vector<float> local(cp.slots * sequences * H * c);
    for (int j = 0; j < cp.slots; ++j)
      for (int64_t b = 0; b < sequences; ++b)
        for (int64_t h = 0; h < H; ++h)
          std::copy_n(&whole[(b * H + h) * T + first(j)], c, &local[((j * sequences + b) * H + h) * c]);
    return local;
  }
};

// The single process's forward and backward of the whole sequences.
struct Reference {
  std::vector<float> out, lse, dq, dk, dv;
};
Reference reference_attention(const RingCase& rc, const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, const std::vector<float>& dout) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t qw = rc.H * rc.D, kw = rc.Hkv * rc.D, n = rc.sequences * rc.T;
  Reference r{std::vector<float>(n * qw),
              std::vector<float>(rc.sequences * rc.H * rc.T, -std::numeric_limits<float>::infinity()),
              std::vector<float>(n * qw, 0.0f), std::vector<float>(n * kw, 0.0f), std::vector<float>(n * kw, 0.0f)};
  if (rc.causal) {
    cpu::attention_forward(q.data(), qw, k.data(), kw, v.data(), kw, rc.sequences, rc.T, rc.H, rc.Hkv, rc.D,
                           r.out.data(), qw, r.lse.data(), pool);
    cpu::attention_backward(dout.data(), qw, q.data(), qw, k.data(), kw, v.data(), kw, r.out.data(), qw,
                            r.lse.data(), rc.sequences, rc.T, rc.H, rc.Hkv, rc.D, r.dq.data(), qw, r.dk.data(), kw,
                            r.dv.data(), kw, pool);
  } else {
    const cpu::AttentionDims dims{rc.sequences, rc.T, rc.T, rc.H, rc.Hkv, rc.D, cpu::AttentionMask::kFull};
    cpu::attention_forward_merge(q.data(), qw, k.data(), kw, v.data(), kw, dims, r.out.data(), qw, r.lse.data(),
                                 pool);
    std::vector<float> delta(r.lse.size());
    cpu::attention_delta(dout.data(), qw, r.out.data(), qw, rc.sequences, rc.T, rc.H, rc.D, delta.data(), pool);
    cpu::attention_backward_accumulate(dout.data(), qw, q.data(), qw, k.data(), kw, v.data(), kw, r.lse.data(),
                                       delta.data(), dims, r.dq.data(), qw, r.dk.data(), kw, r.dv.data(), kw, pool);
  }
  return r;
}

// Runs `cp`'s attention on this rank's rows of random inputs and compares every result with the single process's
// rows; also that the communication buffers peak at what ring_attention_*_buffer_bytes say.
void expect_matches_single_process(const model::ContextParallel& cp, const RingCase& rc, uint32_t seed) {
  const int64_t qw = rc.H * rc.D, kw = rc.Hkv * rc.D, n = rc.sequences * rc.T;
  const std::vector<float> q = random_floats(n * qw, seed), k = random_floats(n * kw, seed + 1),
                           v = random_floats(n * kw, seed + 2), dout = random_floats(n * qw, seed + 3);
  const Reference ref = reference_attention(rc, q, k, v, dout);
  ASSERT_EQ(rc.T % cp.pieces(), 0);
  const Chunks chunks{cp, rc.sequences, rc.T, rc.T / cp.pieces()};
  const std::vector<float> lq = chunks.take(q, qw), lk = chunks.take(k, kw), lv = chunks.take(v, kw),
                           ldout = chunks.take(dout, qw);
  const model::RingAttentionDims dims{cp.slots * rc.sequences, chunks.c, rc.H, rc.Hkv, rc.D, rc.causal};
  std::vector<float> lout(lq.size()), llse(cp.slots * rc.sequences * rc.H * chunks.c);
  std::vector<float> ldq(lq.size(), 9.0f), ldk(lk.size(), 9.0f), ldv(lv.size(), 9.0f);
  MemoryTracker& mem = MemoryTracker::host();
  mem.reset_peaks();
  ASSERT_TRUE(model::ring_attention_forward(cp, lq.data(), qw, lk.data(), kw, lv.data(), kw, dims, lout.data(), qw,
                                            llse.data()).ok());
  EXPECT_EQ(mem.peak(MemCategory::kCommunication), model::ring_attention_forward_buffer_bytes(cp, dims));
  mem.reset_peaks();
  ASSERT_TRUE(model::ring_attention_backward(cp, ldout.data(), qw, lq.data(), qw, lk.data(), kw, lv.data(), kw,
                                             lout.data(), qw, llse.data(), dims, ldq.data(), qw, ldk.data(), kw,
                                             ldv.data(), kw).ok());
  EXPECT_EQ(mem.peak(MemCategory::kCommunication), model::ring_attention_backward_buffer_bytes(cp, dims));
  EXPECT_LT(relative_difference(lout, chunks.take(ref.out, qw), ref.out), 1e-5);
  EXPECT_LT(relative_difference(llse, chunks.take_stats(ref.lse, rc.H), ref.lse), 1e-5);
  EXPECT_LT(relative_difference(ldq, chunks.take(ref.dq, qw), ref.dq), 1e-5);
  EXPECT_LT(relative_difference(ldk, chunks.take(ref.dk, kw), ref.dk), 1e-5);
  EXPECT_LT(relative_difference(ldv, chunks.take(ref.dv, kw), ref.dv), 1e-5);
}

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
  uint32_t seed = 1;
  for (const RingCase& rc : cases) {
    SCOPED_TRACE(describe(rc));
    expect_matches_single_process(model::ContextParallel::over(comm, rc.balanced), rc, seed);
    seed += 4;
  }
}

// Unified SP: the world split into all-to-all groups of U consecutive ranks around a ring of p / U, for every
// U > 1 dividing p; query heads H = 8 and key/value heads 8 (each rank gets 8 / U), 2 (repeated when U > 2) and 1
// (repeated U times); causal with load balancing, without, and the full mask.
TEST(MpiRingAttention, UnifiedSequenceParallelMatchesTheSingleProcess) {
  parallel::Communicator& comm = world().comm();
  const int p = comm.size();
  uint32_t seed = 100;
  for (int U = 2; U <= p; U *= 2) {
    if (p % U != 0) continue;
    const int R = p / U;
    auto a2a = comm.split(comm.rank() / U, comm.rank() % U, "a2a");
    auto ring = comm.split(comm.rank() % U, comm.rank() / U, "ring");
    ASSERT_TRUE(a2a.ok() && ring.ok());
    const RingCase cases[] = {
        {2, 2 * p * 24, 8, 8, 8, true, true},   // pieces of 24 tokens
        {1, 2 * p * 40, 8, 2, 8, true, true},   // pieces of 40: GQA, repeated when U > 2
        {2, p * 36, 8, 1, 8, true, false},      // one chunk per ring rank, one kv head repeated U times
        {2, p * 20, 8, 2, 8, false, false},     // full mask
    };
    for (const RingCase& rc : cases) {
      SCOPED_TRACE(describe(rc) + " U=" + std::to_string(U) + " R=" + std::to_string(R));
      const model::ContextParallel cp = model::ContextParallel::over(**ring, **a2a, comm, rc.balanced);
      ASSERT_EQ(cp.group_size(), p);
      expect_matches_single_process(cp, rc, seed);
      seed += 4;
    }
  }
}

// Bytes an all-to-all rank sends: (U - 1) / U of every tensor it exchanges - forward q, k, v (kv heads repeated
// up to U), out and lse; backward q, k, v, out, dout and lse out and dq, dk, dv back.
TEST(MpiRingAttention, UlyssesSendsWhatItExchanges) {
  parallel::Communicator& comm = world().comm();
  const int U = comm.size();
  auto a2a = comm.split(0, comm.rank(), "a2a");
  auto ring = comm.split(comm.rank(), 0, "ring");
  ASSERT_TRUE(a2a.ok() && ring.ok());
  const model::ContextParallel cp = model::ContextParallel::over(**ring, **a2a, comm);
  const int64_t sequences = 2, c = 12, H = 8, Hkv = 1, D = 8, kv = std::max<int64_t>(Hkv, U);
  const model::RingAttentionDims dims{sequences, c, H, Hkv, D, true};
  const int64_t n = sequences * c;
  std::vector<float> q = random_floats(n * H * D, 5), k = random_floats(n * Hkv * D, 6),
                     v = random_floats(n * Hkv * D, 7), out(q.size()), lse(n * H), dq(q.size()), dk(k.size()),
                     dv(v.size());
  const int64_t before = (*a2a)->bytes_sent();
  ASSERT_TRUE(model::ring_attention_forward(cp, q.data(), H * D, k.data(), Hkv * D, v.data(), Hkv * D, dims,
                                            out.data(), H * D, lse.data()).ok());
  const int64_t forward = 4 * n * (2 * H * D + 2 * kv * D + H) / U * (U - 1);
  EXPECT_EQ((*a2a)->bytes_sent() - before, forward);
  ASSERT_TRUE(model::ring_attention_backward(cp, q.data(), H * D, q.data(), H * D, k.data(), Hkv * D, v.data(),
                                             Hkv * D, out.data(), H * D, lse.data(), dims, dq.data(), H * D,
                                             dk.data(), Hkv * D, dv.data(), Hkv * D).ok());
  EXPECT_EQ((*a2a)->bytes_sent() - before, forward + 4 * n * (4 * H * D + 4 * kv * D + H) / U * (U - 1));
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
