// A communicator of one rank with no MPI underneath: every collective is a copy (or nothing). It lets the trainer
// run its data-parallel code path in a single process (tests, `memtrain` without a launcher) unchanged.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace memtrain::parallel {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(std::string name = "local") : name_(std::move(name)) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  int64_t bytes_sent() const override { return 0; }
  void set_timeout_s(double seconds) override { timeout_s_ = seconds; }
  double timeout_s() const override { return timeout_s_; }

  CommHandle all_reduce_async(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op) override;
  CommHandle reduce_scatter_v_async(const void* send, void* recv, std::span<const int64_t> recv_counts, DType dtype,
                                    ReduceOp op) override;
  CommHandle all_gather_v_async(const void* send, void* recv, std::span<const int64_t> counts, DType dtype) override;
  CommHandle broadcast_async(void* data, int64_t count, DType dtype, int root) override;
  // Messages to oneself are not supported (nothing in memtrain sends them): FailedPrecondition.
  CommHandle send_async(const void* data, int64_t count, DType dtype, int dst, int tag) override;
  CommHandle recv_async(void* data, int64_t count, DType dtype, int src, int tag) override;
  CommHandle all_to_all_v_async(const void* send, std::span<const int64_t> send_counts, void* recv,
                                std::span<const int64_t> recv_counts, DType dtype) override;
  CommHandle barrier_async() override { return CommHandle(); }
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key, std::string name) override;

 private:
  std::string name_;
  std::vector<int> world_ranks_ = {0};
  double timeout_s_ = 300;
};

}  // namespace memtrain::parallel
