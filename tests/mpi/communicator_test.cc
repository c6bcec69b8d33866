// MpiCommunicator under mpirun: every collective against a reference that each rank computes locally from all
// ranks' inputs (rebuilt from the seed), odd and uneven counts, async handles, and the byte counters.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "parallel/communicator.h"
#include "tests/mpi/mpi_test_env.h"

namespace memtrain::parallel {
namespace {

using testing::input_value;
using testing::world;

std::vector<float> inputs(uint64_t seed, int rank, int64_t n, int64_t offset = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = input_value(seed, rank, offset + i);
  return v;
}

// Counts that differ per rank, include 0 and are odd: rank k holds (k * 3 + base) % 7 elements.
std::vector<int64_t> uneven_counts(int p, int64_t base) {
  std::vector<int64_t> c(p);
  for (int k = 0; k < p; ++k) c[k] = (k * 3 + base) % 7;
  return c;
}

TEST(Communicator, AllReduceSumMaxMinOddCounts) {
  Communicator& c = world().comm();
  const int p = c.size(), r = c.rank();
  for (int64_t n : {1, 7, 1001}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
      const uint64_t seed = 100 + n;
      std::vector<float> mine = inputs(seed, r, n), out(n, -1);
      ASSERT_TRUE(c.all_reduce(mine.data(), out.data(), n, DType::kF32, op).ok());
      std::vector<float> want = inputs(seed, 0, n);
      for (int k = 1; k < p; ++k) {
        std::vector<float> other = inputs(seed, k, n);
        for (int64_t i = 0; i < n; ++i)
          want[i] = op == ReduceOp::kSum ? want[i] + other[i]
                    : op == ReduceOp::kMax ? std::max(want[i], other[i]) : std::min(want[i], other[i]);
      }
      EXPECT_EQ(out, want) << "n=" << n << " op=" << reduce_op_name(op) << " seed=" << seed;
    }
  }
}

TEST(Communicator, AllReduceInPlaceInt32) {
  Communicator& c = world().comm();
  std::vector<int32_t> v(5);
  for (int i = 0; i < 5; ++i) v[i] = c.rank() * 10 + i;
  ASSERT_TRUE(c.all_reduce(v.data(), v.data(), 5, DType::kI32, ReduceOp::kSum).ok());
  const int p = c.size();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(v[i], 10 * p * (p - 1) / 2 + p * i);
}

TEST(Communicator, ReduceScatterEvenAndUneven) {
  Communicator& c = world().comm();
  const int p = c.size(), r = c.rank();
  for (bool even : {true, false}) {
    std::vector<int64_t> counts = even ? std::vector<int64_t>(p, 3) : uneven_counts(p, 2);
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    const int64_t offset = std::accumulate(counts.begin(), counts.begin() + r, int64_t{0});
    std::vector<float> mine = inputs(7, r, total), out(counts[r], -1);
    absl::Status s = even ? c.reduce_scatter(mine.data(), out.data(), 3, DType::kF32, ReduceOp::kSum)
                          : c.reduce_scatter_v(mine.data(), out.data(), counts, DType::kF32, ReduceOp::kSum);
    ASSERT_TRUE(s.ok()) << s;
    std::vector<float> want(counts[r], 0);
    for (int k = 0; k < p; ++k)
      for (int64_t i = 0; i < counts[r]; ++i) want[i] += input_value(7, k, offset + i);
    EXPECT_EQ(out, want) << (even ? "even" : "uneven");
  }
}

TEST(Communicator, AllGatherEvenAndUneven) {
  Communicator& c = world().comm();
  const int p = c.size(), r = c.rank();
  for (bool even : {true, false}) {
    std::vector<int64_t> counts = even ? std::vector<int64_t>(p, 5) : uneven_counts(p, 0);  // rank 0 sends nothing
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    std::vector<float> mine = inputs(11, r, counts[r]), out(total, -1), want;
    absl::Status s = even ? c.all_gather(mine.data(), out.data(), 5, DType::kF32)
                          : c.all_gather_v(mine.data(), out.data(), counts, DType::kF32);
    ASSERT_TRUE(s.ok()) << s;
    for (int k = 0; k < p; ++k) {
      std::vector<float> other = inputs(11, k, counts[k]);
      want.insert(want.end(), other.begin(), other.end());
    }
    EXPECT_EQ(out, want) << (even ? "even" : "uneven");
  }
}

TEST(Communicator, AllGatherMovesBf16Bits) {
  Communicator& c = world().comm();
  std::vector<uint16_t> mine = {static_cast<uint16_t>(0x3f80 + c.rank()), 0xffff}, out(2 * c.size());
  ASSERT_TRUE(c.all_gather(mine.data(), out.data(), 2, DType::kBF16).ok());
  for (int k = 0; k < c.size(); ++k) {
    EXPECT_EQ(out[2 * k], 0x3f80 + k);
    EXPECT_EQ(out[2 * k + 1], 0xffff);
  }
}

// bf16 and f16 reductions: inputs are small integers (k - 8 .. k + 8), whose sums over 8 ranks stay exact in both
// formats, so every summation order and the per-step rounding give the reference's values; plus one case where
// rounding to bf16 shows (1 + 2^-9 rounds to 1 in bf16, not in f16).
TEST(Communicator, HalfPrecisionReductions) {
  Communicator& c = world().comm();
  const int p = c.size(), r = c.rank();
  for (DType dt : {DType::kBF16, DType::kF16}) {
    auto to_half = [dt](float f) { return dt == DType::kBF16 ? f32_to_bf16(f) : f32_to_f16(f); };
    auto to_float = [dt](uint16_t h) { return dt == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h); };
    auto value = [](int rank, int i) { return static_cast<float>((rank * 5 + i * 3) % 17 - 8); };
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
      const int n = 3 * p;
      std::vector<uint16_t> mine(n), out(n), scattered(3);
      for (int i = 0; i < n; ++i) mine[i] = to_half(value(r, i));
      ASSERT_TRUE(c.all_reduce(mine.data(), out.data(), n, dt, op).ok()) << dtype_name(dt);
      ASSERT_TRUE(c.reduce_scatter(mine.data(), scattered.data(), 3, dt, op).ok()) << dtype_name(dt);
      for (int i = 0; i < n; ++i) {
        float want = value(0, i);
        for (int k = 1; k < p; ++k)
          want = op == ReduceOp::kSum ? want + value(k, i)
                 : op == ReduceOp::kMax ? std::max(want, value(k, i)) : std::min(want, value(k, i));
        EXPECT_EQ(to_float(out[i]), want) << dtype_name(dt) << " " << reduce_op_name(op) << " i=" << i;
        if (i / 3 == r) EXPECT_EQ(to_float(scattered[i % 3]), want) << dtype_name(dt) << " reduce_scatter i=" << i;
      }
    }
    // Rank 0 adds 2^-9 to a 1 that every rank holds: in bf16 (8 significant bits) the sum stays p; in f16 it is
    // p + 2^-9 when p + 2^-9 is representable (p <= 2).
    uint16_t x = to_half(r == 0 ? 1.0f + 1.0f / 512 : 1.0f), sum = 0;
    ASSERT_TRUE(c.all_reduce(&x, &sum, 1, dt, ReduceOp::kSum).ok());
    if (dt == DType::kBF16) EXPECT_EQ(to_float(sum), static_cast<float>(p));
    if (dt == DType::kF16 && p == 2) EXPECT_EQ(to_float(sum), 2.0f + 1.0f / 512);
  }
}

TEST(Communicator, BroadcastFromEveryRoot) {
  Communicator& c = world().comm();
  for (int root = 0; root < c.size(); ++root) {
    std::vector<float> v = c.rank() == root ? inputs(13, root, 9) : std::vector<float>(9, -1);
    ASSERT_TRUE(c.broadcast(v.data(), 9, DType::kF32, root).ok());
    EXPECT_EQ(v, inputs(13, root, 9)) << "root=" << root;
  }
}

TEST(Communicator, SendRecvRing) {
  Communicator& c = world().comm();
  const int p = c.size(), r = c.rank();
  std::vector<float> mine = inputs(17, r, 33), got(33, -1);
  // Post the receive first and send around the ring; blocking send first could deadlock for large messages.
  CommHandle rh = c.recv_async(got.data(), 33, DType::kF32, (r + p - 1) % p, /*tag=*/5);
  CommHandle sh = c.send_async(mine.data(), 33, DType::kF32, (r + 1) % p, /*tag=*/5);
  ASSERT_TRUE(sh.wait().ok());
  ASSERT_TRUE(rh.wait().ok());
  EXPECT_EQ(got, inputs(17, (r + p - 1) % p, 33));
}

TEST(Communicator, AllToAllUneven) {
  Communicator& c = world().comm();
  const int p = c.size(), r = c.rank();
  // Rank s sends (s + d) % 3 + 1 elements to rank d; element j of that block is input_value(19, s, d * 100 + j).
  auto count = [](int s, int d) { return static_cast<int64_t>((s + d) % 3 + 1); };
  std::vector<int64_t> send_counts(p), recv_counts(p);
  std::vector<float> send, want;
  for (int d = 0; d < p; ++d) {
    send_counts[d] = count(r, d);
    recv_counts[d] = count(d, r);
    for (int64_t j = 0; j < send_counts[d]; ++j) send.push_back(input_value(19, r, d * 100 + j));
    for (int64_t j = 0; j < recv_counts[d]; ++j) want.push_back(input_value(19, d, r * 100 + j));
  }
  std::vector<float> got(want.size(), -1);
  ASSERT_TRUE(c.all_to_all_v(send.data(), send_counts, got.data(), recv_counts, DType::kF32).ok());
  EXPECT_EQ(got, want);
}

TEST(Communicator, AsyncHandlesWaitedOutOfOrder) {
  Communicator& c = world().comm();
  const int p = c.size(), r = c.rank();
  std::vector<float> a = inputs(23, r, 64), b = inputs(29, r, 3), ga(64 * p);
  std::vector<float> sum_b(3);
  CommHandle h1 = c.all_gather_async(a.data(), ga.data(), 64, DType::kF32);
  CommHandle h2 = c.all_reduce_async(b.data(), sum_b.data(), 3, DType::kF32, ReduceOp::kSum);
  CommHandle h3 = c.barrier_async();
  // Waiting in reverse order must work: MPI completes non-blocking collectives in posting order internally.
  EXPECT_TRUE(h3.wait().ok());
  EXPECT_TRUE(h2.wait().ok());
  while (!h1.test()) {}
  EXPECT_TRUE(h1.wait().ok());
  EXPECT_TRUE(h1.wait().ok());  // a second wait returns the same status
  std::vector<float> want_b(3, 0);
  for (int k = 0; k < p; ++k)
    for (int i = 0; i < 3; ++i) want_b[i] += input_value(29, k, i);
  EXPECT_EQ(sum_b, want_b);
  for (int k = 0; k < p; ++k)
    EXPECT_EQ(std::vector<float>(ga.begin() + 64 * k, ga.begin() + 64 * (k + 1)), inputs(23, k, 64));
}

TEST(Communicator, BytesSentFollowRingTheory) {
  Communicator& c = world().comm();
  const int64_t p = c.size(), r = c.rank();
  const auto bytes_of = [&](auto&& call) {
    const int64_t before = c.bytes_sent();
    EXPECT_TRUE(call().ok());
    return c.bytes_sent() - before;
  };
  // Even split: the textbook 2 (p-1)/p * n * 4 bytes for an all-reduce, (p-1) * n * 4 for RS and AG.
  std::vector<float> buf(8 * p * 3), out(8 * p * 3);
  EXPECT_EQ(bytes_of([&] { return c.all_reduce(buf.data(), out.data(), 8 * p, DType::kF32, ReduceOp::kSum); }),
            2 * (p - 1) * 8 * 4);
  EXPECT_EQ(bytes_of([&] { return c.reduce_scatter(buf.data(), out.data(), 5, DType::kF32, ReduceOp::kSum); }),
            (p - 1) * 5 * 4);
  EXPECT_EQ(bytes_of([&] { return c.all_gather(buf.data(), out.data(), 5, DType::kF32); }), (p - 1) * 5 * 4);
  // Odd n: per-rank shares differ, but summed over ranks they are exactly 2 (p-1) n elements.
  int64_t mine = bytes_of([&] { return c.all_reduce(buf.data(), out.data(), 7, DType::kF32, ReduceOp::kSum); });
  int64_t total = 0;
  ASSERT_TRUE(c.all_reduce(&mine, &total, 2, DType::kI32, ReduceOp::kSum).ok());  // int64 as two i32 words
  EXPECT_EQ(total, 2 * (p - 1) * 7 * 4);  // valid while both words stay small and non-negative
  // Broadcast: every rank but the one before the root forwards the buffer once.
  EXPECT_EQ(bytes_of([&] { return c.broadcast(buf.data(), 6, DType::kF32, 0); }), r == p - 1 ? 0 : 6 * 4);
  // all_to_all: what leaves for other ranks, here 2 elements to each.
  std::vector<int64_t> counts(p, 2);
  EXPECT_EQ(bytes_of([&] { return c.all_to_all_v(buf.data(), counts, out.data(), counts, DType::kF32); }),
            (p - 1) * 2 * 4);
}

TEST(Communicator, WrongCountListIsAnError) {
  Communicator& c = world().comm();
  std::vector<int64_t> counts(c.size() + 1, 1);
  float x = 0, y[16];
  absl::Status s = c.all_gather_v(&x, y, counts, DType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(RingFormulas, MatchHandCounts) {
  EXPECT_EQ(ring_chunk(7, 4, 0), 2);
  EXPECT_EQ(ring_chunk(7, 4, 3), 1);
  EXPECT_EQ(ring_all_reduce_bytes(8, 4, 4, 0), 2 * 3 * 2 * 4);  // 2 (p-1) n/p elements
  EXPECT_EQ(ring_all_reduce_bytes(8, 4, 1, 0), 0);
  const int64_t counts[] = {0, 3, 6};
  EXPECT_EQ(ring_gather_bytes(counts, 2, 0), (9 - 3) * 2);
  const int ranks[] = {0, 1, 2, 3, 6, 8, 9};
  EXPECT_EQ(format_ranks(ranks), "0-3,6,8-9");
}

}  // namespace
}  // namespace memtrain::parallel
