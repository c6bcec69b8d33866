// The MPI backend of Communicator for host buffers: non-blocking MPI calls polled with MPI_Testall against a
// deadline, so a rank that dies or never arrives turns into DeadlineExceeded instead of a hang.
#pragma once

#include <mpi.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace memtrain::parallel {

struct MpiRequests;  // requests plus the count arrays MPI reads until they complete
class MpiOp;

// Deadline protocol: an operation that is not done timeout_s() after it was posted fails. Before failing, a rank
// tells every other rank (on a private duplicate of the communicator) "I am stuck in collective #k" and listens
// for the same message for a grace period (timeout/4, clamped to [0.5 s, 2 s]); the ranks it did not hear from are
// reported as missing. So "missing" means "did not reach collective #k within timeout + grace of this rank", which
// is exact for a dead or hung rank and may also list a rank that is merely later than the grace period.
// After a deadline the communicator is poisoned: every later call fails with FailedPrecondition, because MPI cannot
// cancel a posted collective. Its destructor gives the abandoned operations one more timeout to complete (a late
// rank may still arrive); if they do not, it leaks the MPI communicator and marks the world unclean, which makes
// World's destructor call MPI_Abort instead of an MPI_Finalize that would hang.
class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed by the destructor); collective over it (gathers the world ranks, so that no
  // code outside the bootstrap needs MPI_COMM_WORLD). `unclean` is shared with World (see above).
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> adopt(MPI_Comm comm, std::string name, int world_rank,
                                                                double timeout_s,
                                                                std::shared_ptr<std::atomic<bool>> unclean);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm mpi_comm() const { return comm_; }  // for libraries that take a communicator (parallel HDF5)
  const std::string& name() const override { return name_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  int64_t bytes_sent() const override { return bytes_sent_; }
  double wait_s() const override { return wait_s_; }
  void set_timeout_s(double seconds) override { timeout_s_ = seconds; }
  double timeout_s() const override { return timeout_s_; }

  CommHandle all_reduce_async(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op) override;
  CommHandle reduce_scatter_v_async(const void* send, void* recv, std::span<const int64_t> recv_counts, DType dtype,
                                    ReduceOp op) override;
  CommHandle all_gather_v_async(const void* send, void* recv, std::span<const int64_t> counts,
                                DType dtype) override;
  CommHandle broadcast_async(void* data, int64_t count, DType dtype, int root) override;
  CommHandle send_async(const void* data, int64_t count, DType dtype, int dst, int tag) override;
  CommHandle recv_async(void* data, int64_t count, DType dtype, int src, int tag) override;
  CommHandle all_to_all_v_async(const void* send, std::span<const int64_t> send_counts, void* recv,
                                std::span<const int64_t> recv_counts, DType dtype) override;
  CommHandle barrier_async() override;
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key, std::string name) override;

 private:
  friend class MpiOp;
  MpiCommunicator() = default;
  // Checks poisoning, builds the op; the caller posts its requests.
  absl::Status usable(const std::string& what) const;
  std::unique_ptr<MpiOp> make_op(std::string what, bool collective);
  absl::Status wait_op(MpiOp& op);
  absl::Status deadline_exceeded(MpiOp& op);

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm diag_comm_ = MPI_COMM_NULL;  // the "stuck in #k" messages, apart from user traffic
  MPI_Op half_ops_[2][3] = {{MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL}, {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL}};
  MPI_Op op_for(ReduceOp op, DType dtype) const;  // MPI's own op, or the bf16/f16 user op
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;
  double timeout_s_ = 300;
  int64_t bytes_sent_ = 0;
  double wait_s_ = 0;
  int64_t collective_seq_ = 0;  // identical on every rank, since all ranks make the same collective calls
  absl::Status poisoned_;
  std::vector<std::unique_ptr<MpiRequests>> abandoned_;
  std::vector<std::unique_ptr<MpiRequests>> diag_sends_;
  std::shared_ptr<std::atomic<bool>> unclean_;
};

}  // namespace memtrain::parallel
