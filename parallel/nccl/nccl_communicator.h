// The NCCL backend of Communicator, for CUDA device buffers (every pointer passed to it is device memory of the
// communicator's device). Built only where CMake finds CUDA and NCCL (MEMTRAIN_CUDA=AUTO or ON).
//
// Operations are enqueued on one CUDA stream per communicator; a handle waits on a CUDA event recorded after its
// operation. Deadlines: an operation not done timeout_s() after it was enqueued aborts the NCCL communicator
// (ncclCommAbort, which ends the kernels waiting for the missing peers) and fails with DeadlineExceeded naming the
// collective; NCCL cannot say which ranks did not arrive, so the message says so. Later calls then fail with
// FailedPrecondition. Byte counting follows the ring formulas of communicator.h, like the MPI backend.
// Uneven reduce-scatter and all-gather run as grouped per-rank reduces and broadcasts; all-to-all as grouped
// send/recv pairs.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace memtrain::parallel {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap` (host communicator, e.g. MPI): rank 0 makes the NCCL id and broadcasts it; every
  // rank joins with its bootstrap rank on CUDA device `device`. Errors name the CUDA or NCCL call.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> create(Communicator& bootstrap, int device,
                                                                  std::string name);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  int64_t bytes_sent() const override { return bytes_sent_; }
  double wait_s() const override { return wait_s_; }
  void set_timeout_s(double seconds) override { timeout_s_ = seconds; }
  double timeout_s() const override { return timeout_s_; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

  CommHandle all_reduce_async(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op) override;
  CommHandle reduce_scatter_v_async(const void* send, void* recv, std::span<const int64_t> recv_counts, DType dtype,
                                    ReduceOp op) override;
  CommHandle all_gather_v_async(const void* send, void* recv, std::span<const int64_t> counts, DType dtype) override;
  CommHandle broadcast_async(void* data, int64_t count, DType dtype, int root) override;
  CommHandle send_async(const void* data, int64_t count, DType dtype, int dst, int tag) override;
  CommHandle recv_async(void* data, int64_t count, DType dtype, int src, int tag) override;
  CommHandle all_to_all_v_async(const void* send, std::span<const int64_t> send_counts, void* recv,
                                std::span<const int64_t> recv_counts, DType dtype) override;
  CommHandle barrier_async() override;
  // ncclCommSplit; the new communicator gets its own stream and inherits the timeout.
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key, std::string name) override;

 private:
  friend class NcclOp;
  NcclCommunicator() = default;
  absl::Status init_after_comm(const std::vector<int>& world_ranks);
  // Enqueues `enqueue` (NCCL calls on stream_) after the usability check, records the completion event and
  // returns the handle; counts `bytes` when it was enqueued.
  template <class F> CommHandle run(const std::string& what, int64_t bytes, F&& enqueue);
  absl::Status abort_after_deadline(const std::string& what);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;
  double timeout_s_ = 300;
  int64_t bytes_sent_ = 0;
  double wait_s_ = 0;  // host time blocked in wait()
  absl::Status poisoned_;
  void* scratch_ = nullptr;  // 4 device bytes for the barrier
};

}  // namespace memtrain::parallel
