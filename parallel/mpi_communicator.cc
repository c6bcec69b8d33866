// MpiCommunicator: validation, byte counting and posting of each call, and the polling wait with its deadline.
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"

namespace memtrain::parallel {

using Clock = std::chrono::steady_clock;

struct MpiRequests {
  std::vector<MPI_Request> reqs;
  std::vector<int> counts_a, displs_a, counts_b, displs_b;  // MPI reads these until the requests complete
  int64_t diag_payload = 0;                                 // the buffer of a "stuck in #k" send
};

class MpiOp final : public PendingOp {
 public:
  MpiOp(MpiCommunicator* comm, std::string what, int64_t seq)
      : comm_(comm), what_(std::move(what)), seq_(seq), r_(std::make_unique<MpiRequests>()) {}
  absl::Status wait() override { return comm_->wait_op(*this); }
  bool test() override {
    if (r_ == nullptr) return true;
    int flag = 0;
    MPI_Testall(static_cast<int>(r_->reqs.size()), r_->reqs.data(), &flag, MPI_STATUSES_IGNORE);
    return flag != 0;
  }

  MpiCommunicator* comm_;
  std::string what_;
  int64_t seq_;  // -1 for point-to-point
  Clock::time_point start_ = Clock::now();
  std::unique_ptr<MpiRequests> r_;
};

namespace {

constexpr int kDiagTag = 7301;

std::string mpi_error(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  return std::string(buf, len);
}

// bf16/f16 move as 16-bit words; they are rejected for reductions (MPI has no such arithmetic).
MPI_Datatype mpi_type(DType dt) {
  switch (dt) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI8: return MPI_INT8_T;
    case DType::kU8: return MPI_UINT8_T;
    case DType::kBF16:
    case DType::kF16:
    case DType::kU16: return MPI_UINT16_T;
  }
  return MPI_DATATYPE_NULL;
}

bool reducible(DType dt) {
  return dt == DType::kF32 || dt == DType::kI32 || dt == DType::kI8 || dt == DType::kU8 || dt == DType::kBF16 ||
         dt == DType::kF16;
}

// MPI user operations for the 16-bit floats MPI has no type for: each pairwise step widens to fp32, applies the
// operation and rounds back (what NCCL does for bf16/f16). One function per (format, op), since the operation
// sees only MPI_UINT16_T.
template <bool kBf16, ReduceOp kOp>
void half_reduce(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = kBf16 ? bf16_to_f32(a[i]) : f16_to_f32(a[i]);
    const float y = kBf16 ? bf16_to_f32(b[i]) : f16_to_f32(b[i]);
    const float r = kOp == ReduceOp::kSum ? x + y : kOp == ReduceOp::kMax ? std::max(x, y) : std::min(x, y);
    b[i] = kBf16 ? f32_to_bf16(r) : f32_to_f16(r);
  }
}
constexpr MPI_User_function* kHalfOps[2][3] = {
    {&half_reduce<true, ReduceOp::kSum>, &half_reduce<true, ReduceOp::kMax>, &half_reduce<true, ReduceOp::kMin>},
    {&half_reduce<false, ReduceOp::kSum>, &half_reduce<false, ReduceOp::kMax>, &half_reduce<false, ReduceOp::kMin>}};
int op_index(ReduceOp op) { return op == ReduceOp::kSum ? 0 : op == ReduceOp::kMax ? 1 : 2; }

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

// MPI counts and displacements are ints; the large-count API (MPI 4) is not in Open MPI 4.1.
absl::Status to_int_counts(std::span<const int64_t> counts, int p, const std::string& what, std::vector<int>& out,
                           std::vector<int>& displs) {
  if (static_cast<int>(counts.size()) != p)
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", counts.size(), " counts for ", p, " ranks"));
  out.resize(p);
  displs.resize(p);
  int64_t off = 0;
  for (int k = 0; k < p; ++k) {
    if (counts[k] < 0 || counts[k] > INT_MAX || off > INT_MAX)
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": count ", counts[k], " of rank ", k, " at offset ", off, " exceeds the MPI int range"));
    out[k] = static_cast<int>(counts[k]);
    displs[k] = static_cast<int>(off);
    off += counts[k];
  }
  return absl::OkStatus();
}

absl::Status check_count(int64_t count, const std::string& what) {
  if (count < 0 || count > INT_MAX)
    return absl::InvalidArgumentError(absl::StrCat(what, ": count ", count, " outside [0, INT_MAX]"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::adopt(MPI_Comm comm, std::string name,
                                                                        int world_rank, double timeout_s,
                                                                        std::shared_ptr<std::atomic<bool>> unclean) {
  std::unique_ptr<MpiCommunicator> c(new MpiCommunicator());
  c->comm_ = comm;
  c->name_ = std::move(name);
  c->timeout_s_ = timeout_s;
  c->unclean_ = std::move(unclean);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm, &c->rank_);
  MPI_Comm_size(comm, &c->size_);
  int rc = MPI_Comm_dup(comm, &c->diag_comm_);
  if (rc != MPI_SUCCESS) return absl::InternalError(absl::StrCat("MPI_Comm_dup for ", c->name_, ": ", mpi_error(rc)));
  MPI_Comm_set_errhandler(c->diag_comm_, MPI_ERRORS_RETURN);
  c->world_ranks_.resize(c->size_);
  rc = MPI_Allgather(&world_rank, 1, MPI_INT, c->world_ranks_.data(), 1, MPI_INT, comm);
  if (rc != MPI_SUCCESS) return absl::InternalError(absl::StrCat("MPI_Allgather for ", c->name_, ": ", mpi_error(rc)));
  for (int f = 0; f < 2; ++f) {
    for (int o = 0; o < 3; ++o) {
      rc = MPI_Op_create(kHalfOps[f][o], /*commute=*/1, &c->half_ops_[f][o]);
      if (rc != MPI_SUCCESS) return absl::InternalError(absl::StrCat("MPI_Op_create: ", mpi_error(rc)));
    }
  }
  return c;
}

MpiCommunicator::~MpiCommunicator() {
  bool clean = true;
  // Abandoned collectives: a late rank may still arrive; poll them for one more timeout (see the header).
  const auto deadline = Clock::now() + std::chrono::duration<double>(abandoned_.empty() ? 0.0 : timeout_s_);
  for (auto& r : abandoned_) {
    int flag = 0;
    while (MPI_Testall(static_cast<int>(r->reqs.size()), r->reqs.data(), &flag, MPI_STATUSES_IGNORE) == MPI_SUCCESS &&
           !flag && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!flag) clean = false;
  }
  // Drain "stuck" messages that others sent us while we were elsewhere, and finish our own.
  for (;;) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kDiagTag, diag_comm_, &flag, &st) != MPI_SUCCESS || !flag) break;
    int64_t v;
    MPI_Recv(&v, 1, MPI_INT64_T, st.MPI_SOURCE, kDiagTag, diag_comm_, MPI_STATUS_IGNORE);
  }
  for (auto& r : diag_sends_) {
    int flag = 0;
    MPI_Testall(static_cast<int>(r->reqs.size()), r->reqs.data(), &flag, MPI_STATUSES_IGNORE);
    if (!flag) clean = false;
  }
  if (!clean) {
    unclean_->store(true);  // leak: freeing a communicator with posted operations is erroneous
    return;
  }
  MPI_Comm_free(&diag_comm_);
  MPI_Comm_free(&comm_);
  for (auto& ops : half_ops_)
    for (MPI_Op& op : ops)
      if (op != MPI_OP_NULL) MPI_Op_free(&op);
}

MPI_Op MpiCommunicator::op_for(ReduceOp op, DType dtype) const {
  if (dtype == DType::kBF16) return half_ops_[0][op_index(op)];
  if (dtype == DType::kF16) return half_ops_[1][op_index(op)];
  return mpi_op(op);
}

absl::Status MpiCommunicator::usable(const std::string& what) const {
  if (!poisoned_.ok())
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": communicator unusable after an earlier failure: ", poisoned_.message()));
  return absl::OkStatus();
}

std::unique_ptr<MpiOp> MpiCommunicator::make_op(std::string what, bool collective) {
  return std::make_unique<MpiOp>(this, std::move(what), collective ? collective_seq_++ : -1);
}

absl::Status MpiCommunicator::wait_op(MpiOp& op) {
  if (op.r_ == nullptr) return absl::OkStatus();
  const auto deadline = op.start_ + std::chrono::duration<double>(timeout_s_);
  struct Timer {  // adds the time blocked here to wait_s_ on every way out
    double& total;
    Clock::time_point t0 = Clock::now();
    ~Timer() { total += std::chrono::duration<double>(Clock::now() - t0).count(); }
  } timer{wait_s_};
  // Poll: MPI progresses only inside MPI calls. Spin briefly, then sleep, so that oversubscribed ranks leave the
  // cores to the ranks that have work.
  for (int polls = 0;; ++polls) {
    int flag = 0;
    const int rc = MPI_Testall(static_cast<int>(op.r_->reqs.size()), op.r_->reqs.data(), &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      poisoned_ = absl::InternalError(absl::StrCat(op.what_, ": ", mpi_error(rc)));
      abandoned_.push_back(std::move(op.r_));
      return poisoned_;
    }
    if (flag) {
      op.r_.reset();
      return absl::OkStatus();
    }
    if (Clock::now() >= deadline) return deadline_exceeded(op);
    if (polls < 64) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(std::min(polls, 1000)));
  }
}

absl::Status MpiCommunicator::deadline_exceeded(MpiOp& op) {
  abandoned_.push_back(std::move(op.r_));
  std::string msg = absl::StrFormat("%s: no completion after %g s", op.what_, timeout_s_);
  if (op.seq_ >= 0 && size_ > 1) {
    auto sends = std::make_unique<MpiRequests>();
    sends->diag_payload = op.seq_;
    sends->reqs.resize(size_ - 1);
    for (int k = 0, i = 0; k < size_; ++k)
      if (k != rank_) MPI_Isend(&sends->diag_payload, 1, MPI_INT64_T, k, kDiagTag, diag_comm_, &sends->reqs[i++]);
    diag_sends_.push_back(std::move(sends));
    const double grace_s = std::clamp(timeout_s_ / 4, 0.5, 2.0);
    std::vector<bool> arrived(size_, false);
    arrived[rank_] = true;
    const auto until = Clock::now() + std::chrono::duration<double>(grace_s);
    while (Clock::now() < until && std::count(arrived.begin(), arrived.end(), false) > 0) {
      int flag = 0;
      MPI_Status st;
      MPI_Iprobe(MPI_ANY_SOURCE, kDiagTag, diag_comm_, &flag, &st);
      if (!flag) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      int64_t seq = -1;
      MPI_Recv(&seq, 1, MPI_INT64_T, st.MPI_SOURCE, kDiagTag, diag_comm_, MPI_STATUS_IGNORE);
      if (seq == op.seq_) arrived[st.MPI_SOURCE] = true;  // older sequence numbers: stale reports
    }
    std::vector<int> missing, missing_world;
    for (int k = 0; k < size_; ++k)
      if (!arrived[k]) {
        missing.push_back(k);
        missing_world.push_back(world_ranks_[k]);
      }
    if (missing.empty())
      absl::StrAppend(&msg, "; every rank reports being in this collective (#", op.seq_,
                      "): mismatched counts or a stalled network?");
    else
      absl::StrAppendFormat(&msg, "; missing ranks %s (world ranks %s): not in collective #%d within %g s more",
                            format_ranks(missing), format_ranks(missing_world), op.seq_, grace_s);
  }
  poisoned_ = absl::DeadlineExceededError(msg);
  return poisoned_;
}

// Each call: describe it for messages, validate, count bytes, post, and hand back the op.
#define MEMTRAIN_MPI_POST(call, what)                                                    \
  do {                                                                                   \
    const int _rc = (call);                                                              \
    if (_rc != MPI_SUCCESS)                                                              \
      return CommHandle::failed(absl::InternalError(absl::StrCat(what, ": ", mpi_error(_rc)))); \
  } while (0)
#define MEMTRAIN_HANDLE_IF_ERROR(expr)                    \
  do {                                                    \
    absl::Status _s = (expr);                             \
    if (!_s.ok()) return CommHandle::failed(std::move(_s)); \
  } while (0)

CommHandle MpiCommunicator::all_reduce_async(const void* send, void* recv, int64_t count, DType dtype, ReduceOp op) {
  const std::string what = absl::StrCat("all_reduce(", reduce_op_name(op), ", ", count, " x ", dtype_name(dtype),
                                        ") on ", describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  MEMTRAIN_HANDLE_IF_ERROR(check_count(count, what));
  if (!reducible(dtype)) return CommHandle::failed(absl::UnimplementedError(what + ": MPI cannot reduce this dtype"));
  auto o = make_op(what, true);
  o->r_->reqs.resize(1);
  MEMTRAIN_MPI_POST(MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, static_cast<int>(count),
                                   mpi_type(dtype), op_for(op, dtype), comm_, o->r_->reqs.data()),
                    what);
  bytes_sent_ += ring_all_reduce_bytes(count, dtype_size(dtype), size_, rank_);
  return CommHandle(std::move(o));
}

CommHandle MpiCommunicator::reduce_scatter_v_async(const void* send, void* recv, std::span<const int64_t> recv_counts,
                                                   DType dtype, ReduceOp op) {
  const std::string what = absl::StrCat("reduce_scatter(", reduce_op_name(op), ", ", dtype_name(dtype), ") on ",
                                        describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  if (!reducible(dtype)) return CommHandle::failed(absl::UnimplementedError(what + ": MPI cannot reduce this dtype"));
  auto o = make_op(what, true);
  MEMTRAIN_HANDLE_IF_ERROR(to_int_counts(recv_counts, size_, what, o->r_->counts_a, o->r_->displs_a));
  o->r_->reqs.resize(1);
  MEMTRAIN_MPI_POST(MPI_Ireduce_scatter(send, recv, o->r_->counts_a.data(), mpi_type(dtype), op_for(op, dtype), comm_,
                                        o->r_->reqs.data()),
                    what);
  bytes_sent_ += ring_gather_bytes(recv_counts, dtype_size(dtype), rank_);
  return CommHandle(std::move(o));
}

CommHandle MpiCommunicator::all_gather_v_async(const void* send, void* recv, std::span<const int64_t> counts,
                                               DType dtype) {
  const std::string what = absl::StrCat("all_gather(", dtype_name(dtype), ") on ", describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  auto o = make_op(what, true);
  MEMTRAIN_HANDLE_IF_ERROR(to_int_counts(counts, size_, what, o->r_->counts_a, o->r_->displs_a));
  o->r_->reqs.resize(1);
  const MPI_Datatype t = mpi_type(dtype);
  // In place when send is this rank's own block of recv.
  const bool in_place =
      send == static_cast<const char*>(recv) + static_cast<size_t>(o->r_->displs_a[rank_]) * dtype_size(dtype);
  MEMTRAIN_MPI_POST(MPI_Iallgatherv(in_place ? MPI_IN_PLACE : send, o->r_->counts_a[rank_], t, recv, o->r_->counts_a.data(),
                                    o->r_->displs_a.data(), t, comm_, o->r_->reqs.data()),
                    what);
  bytes_sent_ += ring_gather_bytes(counts, dtype_size(dtype), rank_);
  return CommHandle(std::move(o));
}

CommHandle MpiCommunicator::broadcast_async(void* data, int64_t count, DType dtype, int root) {
  const std::string what = absl::StrCat("broadcast(", count, " x ", dtype_name(dtype), " from ", root, ") on ",
                                        describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  MEMTRAIN_HANDLE_IF_ERROR(check_count(count, what));
  if (root < 0 || root >= size_) return CommHandle::failed(absl::InvalidArgumentError(what + ": no such root"));
  auto o = make_op(what, true);
  o->r_->reqs.resize(1);
  MEMTRAIN_MPI_POST(MPI_Ibcast(data, static_cast<int>(count), mpi_type(dtype), root, comm_, o->r_->reqs.data()),
                    what);
  // Chain root -> root+1 -> ...: every rank but the last one forwards the whole buffer.
  if (size_ > 1 && rank_ != (root + size_ - 1) % size_) bytes_sent_ += count * static_cast<int64_t>(dtype_size(dtype));
  return CommHandle(std::move(o));
}

CommHandle MpiCommunicator::send_async(const void* data, int64_t count, DType dtype, int dst, int tag) {
  const std::string what = absl::StrCat("send(", count, " x ", dtype_name(dtype), " to ", dst, ", tag ", tag,
                                        ") on ", describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  MEMTRAIN_HANDLE_IF_ERROR(check_count(count, what));
  if (dst < 0 || dst >= size_) return CommHandle::failed(absl::InvalidArgumentError(what + ": no such rank"));
  auto o = make_op(what, false);
  o->r_->reqs.resize(1);
  MEMTRAIN_MPI_POST(MPI_Isend(data, static_cast<int>(count), mpi_type(dtype), dst, tag, comm_, o->r_->reqs.data()),
                    what);
  bytes_sent_ += count * static_cast<int64_t>(dtype_size(dtype));
  return CommHandle(std::move(o));
}

CommHandle MpiCommunicator::recv_async(void* data, int64_t count, DType dtype, int src, int tag) {
  const std::string what = absl::StrCat("recv(", count, " x ", dtype_name(dtype), " from ", src, ", tag ", tag,
                                        ") on ", describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  MEMTRAIN_HANDLE_IF_ERROR(check_count(count, what));
  if (src < 0 || src >= size_) return CommHandle::failed(absl::InvalidArgumentError(what + ": no such rank"));
  auto o = make_op(what, false);
  o->r_->reqs.resize(1);
  MEMTRAIN_MPI_POST(MPI_Irecv(data, static_cast<int>(count), mpi_type(dtype), src, tag, comm_, o->r_->reqs.data()),
                    what);
  return CommHandle(std::move(o));
}

CommHandle MpiCommunicator::all_to_all_v_async(const void* send, std::span<const int64_t> send_counts, void* recv,
                                               std::span<const int64_t> recv_counts, DType dtype) {
  const std::string what = absl::StrCat("all_to_all(", dtype_name(dtype), ") on ", describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  auto o = make_op(what, true);
  MpiRequests& r = *o->r_;
  MEMTRAIN_HANDLE_IF_ERROR(to_int_counts(send_counts, size_, what, r.counts_a, r.displs_a));
  MEMTRAIN_HANDLE_IF_ERROR(to_int_counts(recv_counts, size_, what, r.counts_b, r.displs_b));
  r.reqs.resize(1);
  const MPI_Datatype t = mpi_type(dtype);
  MEMTRAIN_MPI_POST(MPI_Ialltoallv(send, r.counts_a.data(), r.displs_a.data(), t, recv, r.counts_b.data(),
                                   r.displs_b.data(), t, comm_, r.reqs.data()),
                    what);
  for (int k = 0; k < size_; ++k)
    if (k != rank_) bytes_sent_ += send_counts[k] * static_cast<int64_t>(dtype_size(dtype));
  return CommHandle(std::move(o));
}

CommHandle MpiCommunicator::barrier_async() {
  const std::string what = absl::StrCat("barrier on ", describe());
  MEMTRAIN_HANDLE_IF_ERROR(usable(what));
  auto o = make_op(what, true);
  o->r_->reqs.resize(1);
  MEMTRAIN_MPI_POST(MPI_Ibarrier(comm_, o->r_->reqs.data()), what);
  return CommHandle(std::move(o));
}

absl::StatusOr<std::unique_ptr<Communicator>> MpiCommunicator::split(int color, int key, std::string name) {
  // MPI_Comm_split blocks with no deadline; a barrier with one first turns a missing rank into an error.
  MEMTRAIN_RETURN_IF_ERROR(annotate(barrier(), absl::StrCat("before splitting '", name, "' off ", name_)));
  MPI_Comm sub = MPI_COMM_NULL;
  const int rc = MPI_Comm_split(comm_, color, key, &sub);
  if (rc != MPI_SUCCESS)
    return absl::InternalError(absl::StrCat("MPI_Comm_split of ", describe(), " into ", name, ": ", mpi_error(rc)));
  MEMTRAIN_ASSIGN_OR_RETURN(auto c, adopt(sub, std::move(name), world_ranks_[rank_], timeout_s_, unclean_));
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace memtrain::parallel
