// parallel::Communicator: the collective interface every distributed component receives by reference (there is
// no global communicator). MPI backs host buffers (mpi_communicator.h); NCCL will back device buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/dtype.h"

namespace memtrain::parallel {

enum class ReduceOp { kSum, kMax, kMin };
const char* reduce_op_name(ReduceOp op);  // "sum", "max", "min"

// One in-flight operation of a backend. wait() blocks until it is done or its deadline passed.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  virtual absl::Status wait() = 0;
  virtual bool test() = 0;  // true once done; also drives progress (MPI progresses only inside MPI calls)
};

// The result of an asynchronous call: a movable value. The buffers passed to the call must stay alive and
// untouched until wait() returns. Destroying a handle that was never waited waits for it (so a forgotten wait can
// not let the network write into freed memory) and aborts if that wait fails.
class CommHandle {
 public:
  CommHandle() = default;  // already done, OK
  explicit CommHandle(std::unique_ptr<PendingOp> op) : op_(std::move(op)) {}
  static CommHandle failed(absl::Status status);  // a call that failed before starting
  CommHandle(CommHandle&&) = default;
  CommHandle& operator=(CommHandle&& other);
  ~CommHandle();

  // OK when the operation completed; DeadlineExceeded naming the collective and missing ranks; the first call's
  // status again on later calls.
  absl::Status wait();
  // Non-blocking: true once wait() would return at once. Call it between chunks of compute to make progress.
  bool test();

 private:
  std::unique_ptr<PendingOp> op_;
  absl::Status status_;
  bool done_ = false;
};

// Buffers are host memory of `count` elements of `dtype`; counts are in elements. Unless a method says otherwise,
// send and receive buffers may not overlap. Reductions support f32, i32, i8, u8, bf16 and f16 (16-bit floats are
// combined in fp32 and rounded back after every pairwise step, as NCCL does). Every rank of the communicator must
// make the same calls in the same order with matching counts, dtypes and ops.
//
// Byte counting: bytes_sent() adds, per call, the bytes this rank puts on the wire under the ring algorithm
// (the model NCCL and the bandwidth formulas of DDP/ZeRO papers use), whatever algorithm MPI actually picks:
//   all_reduce of n elements      2n - c(r) - c(r+1) elements, c(k) = the ring chunk k of n split p ways
//                                 (= 2n(p-1)/p when p divides n; summed over ranks exactly 2n(p-1))
//   reduce_scatter (counts c_k)   total - c((r+1) mod p)     (= (p-1) c when even)
//   all_gather (counts c_k)       total - c((r+1) mod p)     (= (p-1) c when even)
//   broadcast of n (chain)        n on every rank except the one before the root, (root-1) mod p
//   send of n                     n;  recv: 0
//   all_to_all                    the sum of send counts to other ranks
// Calls that fail validation count nothing. p == 1 sends nothing.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "world", "dp", "tp", ...: used in error messages.
  virtual const std::string& name() const = 0;
  // world_ranks()[i] is the world rank of this communicator's rank i.
  virtual const std::vector<int>& world_ranks() const = 0;
  virtual int64_t bytes_sent() const = 0;
  // Seconds the callers spent blocked in wait() on this communicator's operations: the communication that compute
  // did not hide. 0 for one process, whose calls never wait.
  virtual double wait_s() const { return 0; }
  // The deadline of every later call; an operation not done this long after it started fails.
  virtual void set_timeout_s(double seconds) = 0;
  virtual double timeout_s() const = 0;

  // recv = reduce over ranks of send, `count` elements. send == recv is allowed (in place).
  virtual CommHandle all_reduce_async(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op) = 0;
  // send holds sum(recv_counts) elements laid out rank by rank; rank r receives the reduction of its
  // recv_counts[r]-element block. recv_counts has size() entries, identical on every rank.
  virtual CommHandle reduce_scatter_v_async(const void* send, void* recv, std::span<const int64_t> recv_counts,
                                            DType dtype, ReduceOp op) = 0;
  // recv holds sum(counts) elements: rank k's counts[k]-element send buffer at offset sum(counts[0..k)). send may
  // be this rank's own block of recv (in place).
  virtual CommHandle all_gather_v_async(const void* send, void* recv, std::span<const int64_t> counts,
                                        DType dtype) = 0;
  // data on `root` is copied to every rank's data.
  virtual CommHandle broadcast_async(void* data, int64_t count, DType dtype, int root) = 0;
  virtual CommHandle send_async(const void* data, int64_t count, DType dtype, int dst, int tag) = 0;
  virtual CommHandle recv_async(void* data, int64_t count, DType dtype, int src, int tag) = 0;
  // send_counts[k] elements go to rank k (packed rank by rank); recv_counts[k] elements come from rank k.
  virtual CommHandle all_to_all_v_async(const void* send, std::span<const int64_t> send_counts, void* recv,
                                        std::span<const int64_t> recv_counts, DType dtype) = 0;
  virtual CommHandle barrier_async() = 0;

  // A new communicator of the ranks that pass the same color, ordered by (key, rank). Collective over this
  // communicator. It inherits the timeout.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key, std::string name) = 0;

  // Even-count conveniences (count elements per rank) and blocking forms (= async + wait).
  CommHandle reduce_scatter_async(const void* send, void* recv, int64_t recv_count, DType dtype, ReduceOp op);
  CommHandle all_gather_async(const void* send, void* recv, int64_t send_count, DType dtype);
  absl::Status all_reduce(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op) {
    return all_reduce_async(send, recv, count, dtype, op).wait();
  }
  absl::Status reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype, ReduceOp op) {
    return reduce_scatter_async(send, recv, recv_count, dtype, op).wait();
  }
  absl::Status reduce_scatter_v(const void* send, void* recv, std::span<const int64_t> recv_counts, DType dtype,
                                ReduceOp op) {
    return reduce_scatter_v_async(send, recv, recv_counts, dtype, op).wait();
  }
  absl::Status all_gather(const void* send, void* recv, int64_t send_count, DType dtype) {
    return all_gather_async(send, recv, send_count, dtype).wait();
  }
  absl::Status all_gather_v(const void* send, void* recv, std::span<const int64_t> counts, DType dtype) {
    return all_gather_v_async(send, recv, counts, dtype).wait();
  }
  absl::Status broadcast(void* data, int64_t count, DType dtype, int root) {
    return broadcast_async(data, count, dtype, root).wait();
  }
  absl::Status send(const void* data, int64_t count, DType dtype, int dst, int tag = 0) {
    return send_async(data, count, dtype, dst, tag).wait();
  }
  absl::Status recv(void* data, int64_t count, DType dtype, int src, int tag = 0) {
    return recv_async(data, count, dtype, src, tag).wait();
  }
  absl::Status all_to_all_v(const void* send, std::span<const int64_t> send_counts, void* recv,
                            std::span<const int64_t> recv_counts, DType dtype) {
    return all_to_all_v_async(send, send_counts, recv, recv_counts, dtype).wait();
  }
  absl::Status barrier() { return barrier_async().wait(); }

  // "dp (size 4, world ranks 0-3)" for messages.
  std::string describe() const;
};

// The ring chunk k of n elements split p ways: the first n % p chunks hold one element more.
int64_t ring_chunk(int64_t n, int p, int k);
// The bytes rank r of p sends under the formulas above (for tests and benchmarks).
int64_t ring_all_reduce_bytes(int64_t n, size_t elem_bytes, int p, int r);
int64_t ring_gather_bytes(std::span<const int64_t> counts, size_t elem_bytes, int r);  // reduce-scatter/all-gather
// "0-3", "0,2,4,6", "1": compact list of ranks for messages.
std::string format_ranks(std::span<const int> ranks);

}  // namespace memtrain::parallel
