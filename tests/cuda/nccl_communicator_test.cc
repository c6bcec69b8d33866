// NcclCommunicator on CUDA devices, under mpirun with one rank per GPU (label `cuda`; skipped where the machine
// has fewer GPUs than ranks): each collective against a reference every rank computes on the host from all
// ranks' inputs, uneven counts, bf16 sums, async handles, byte counters, split.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/status.h"
#include "parallel/nccl/nccl_communicator.h"
#include "tests/mpi/mpi_test_env.h"

namespace memtrain::parallel {
namespace {
using testing::input_value;
using testing::world;

// One NCCL communicator for the whole test program, on GPU rank % devices.
NcclCommunicator* nccl() {
  static std::unique_ptr<NcclCommunicator> comm = [] {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < world().size())
      return std::unique_ptr<NcclCommunicator>();
    auto c = NcclCommunicator::create(world().comm(), world().rank() % devices, "nccl");
    MEMTRAIN_CHECK_OK(c.status());
    return std::move(*c);
  }();
  return comm.get();
}
#define NCCL_OR_SKIP()                                                               \
  NcclCommunicator* c = nccl();                                                      \
  if (c == nullptr) GTEST_SKIP() << "needs one GPU per rank (" << world().size() << ")"

template <class T> struct DeviceBuffer {
  explicit DeviceBuffer(size_t n) : n(n) {
    MEMTRAIN_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T) + 1) == cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(p); }
  void put(const std::vector<T>& v) {
    MEMTRAIN_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<T> get() const {
    std::vector<T> v(n);
    MEMTRAIN_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return v;
  }
  T* p = nullptr;
  size_t n;
};

std::vector<float> inputs(uint64_t seed, int rank, int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = input_value(seed, rank, i);
  return v;
}

TEST(Nccl, AllReduceSumAgainstHostReference) {
  NCCL_OR_SKIP();
  const int p = c->size();
  for (int64_t n : {1, 1001}) {
    DeviceBuffer<float> buf(n);
    buf.put(inputs(n, c->rank(), n));
    const int64_t before = c->bytes_sent();
    ASSERT_TRUE(c->all_reduce(buf.p, buf.p, n, DType::kF32, ReduceOp::kSum).ok());
    EXPECT_EQ(c->bytes_sent() - before, ring_all_reduce_bytes(n, 4, p, c->rank()));
    std::vector<float> want = inputs(n, 0, n);
    for (int k = 1; k < p; ++k) {
      const std::vector<float> o = inputs(n, k, n);
      for (int64_t i = 0; i < n; ++i) want[i] += o[i];
    }
    EXPECT_EQ(buf.get(), want);
  }
}

TEST(Nccl, Bf16SumOfSmallIntegersIsExact) {
  NCCL_OR_SKIP();
  std::vector<uint16_t> mine(8);
  for (int i = 0; i < 8; ++i) mine[i] = f32_to_bf16(static_cast<float>(c->rank() + i));
  DeviceBuffer<uint16_t> buf(8);
  buf.put(mine);
  ASSERT_TRUE(c->all_reduce(buf.p, buf.p, 8, DType::kBF16, ReduceOp::kSum).ok());
  const std::vector<uint16_t> out = buf.get();
  const int p = c->size();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(bf16_to_f32(out[i]), static_cast<float>(p * i + p * (p - 1) / 2));
}

TEST(Nccl, UnevenReduceScatterAndAllGather) {
  NCCL_OR_SKIP();
  const int p = c->size(), r = c->rank();
  std::vector<int64_t> counts(p);
  int64_t total = 0;
  for (int k = 0; k < p; ++k) total += counts[k] = (k * 3 + 2) % 5;
  DeviceBuffer<float> send(total), mine(counts[r]), gathered(total);
  send.put(inputs(7, r, total));
  ASSERT_TRUE(c->reduce_scatter_v(send.p, mine.p, counts, DType::kF32, ReduceOp::kSum).ok());
  std::vector<float> sum = inputs(7, 0, total);
  for (int k = 1; k < p; ++k) {
    const std::vector<float> o = inputs(7, k, total);
    for (int64_t i = 0; i < total; ++i) sum[i] += o[i];
  }
  int64_t offset = 0;
  for (int k = 0; k < r; ++k) offset += counts[k];
  const std::vector<float> got = mine.get();
  for (int64_t i = 0; i < counts[r]; ++i) EXPECT_EQ(got[i], sum[offset + i]);
  ASSERT_TRUE(c->all_gather_v(mine.p, gathered.p, counts, DType::kF32).ok());
  EXPECT_EQ(gathered.get(), sum);
}

TEST(Nccl, AsyncHandlesAndSplit) {
  NCCL_OR_SKIP();
  DeviceBuffer<float> a(64), b(64);
  a.put(std::vector<float>(64, 1.0f));
  b.put(std::vector<float>(64, 2.0f));
  CommHandle ha = c->all_reduce_async(a.p, a.p, 64, DType::kF32, ReduceOp::kSum);
  CommHandle hb = c->all_reduce_async(b.p, b.p, 64, DType::kF32, ReduceOp::kMax);
  ASSERT_TRUE(hb.wait().ok());
  ASSERT_TRUE(ha.wait().ok());
  EXPECT_EQ(a.get(), std::vector<float>(64, static_cast<float>(c->size())));
  EXPECT_EQ(b.get(), std::vector<float>(64, 2.0f));
  auto half = c->split(c->rank() % 2, c->rank(), "half");
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_EQ((*half)->size(), (c->size() + 1 - c->rank() % 2) / 2);
  EXPECT_EQ((*half)->world_ranks()[(*half)->rank()], world().rank());
  ASSERT_TRUE((*half)->barrier().ok());
}

}  // namespace
}  // namespace memtrain::parallel
