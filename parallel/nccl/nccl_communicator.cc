#include "parallel/nccl/nccl_communicator.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::parallel {
namespace {
using Clock = std::chrono::steady_clock;

absl::Status cuda_check(cudaError_t e, absl::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}
absl::Status nccl_check(ncclResult_t r, absl::string_view what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(r)));
}
// Reductions need NCCL's own type; everything else moves bytes.
bool nccl_reduce_type(DType dt, ncclDataType_t* t) {
  switch (dt) {
    case DType::kF32: *t = ncclFloat32; return true;
    case DType::kBF16: *t = ncclBfloat16; return true;
    case DType::kF16: *t = ncclFloat16; return true;
    case DType::kI32: *t = ncclInt32; return true;
    case DType::kI8: *t = ncclInt8; return true;
    case DType::kU8: *t = ncclUint8; return true;
    case DType::kU16: return false;
  }
  return false;
}
ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}
const char* at(const void* p, int64_t elements, DType dt) {
  return static_cast<const char*>(p) + static_cast<size_t>(elements) * dtype_size(dt);
}
char* at(void* p, int64_t elements, DType dt) {
  return static_cast<char*>(p) + static_cast<size_t>(elements) * dtype_size(dt);
}
size_t nbytes(int64_t elements, DType dt) { return static_cast<size_t>(elements) * dtype_size(dt); }

absl::Status check_counts(std::span<const int64_t> counts, int p, const std::string& what) {
  if (static_cast<int>(counts.size()) != p)
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", counts.size(), " counts for ", p, " ranks"));
  for (int64_t c : counts)
    if (c < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative count ", c));
  return absl::OkStatus();
}
}  // namespace

class NcclOp final : public PendingOp {
 public:
  NcclOp(NcclCommunicator* c, std::string what, cudaEvent_t done)
      : c_(c), what_(std::move(what)), event_(done), start_(Clock::now()), timeout_s_(c->timeout_s()) {}
  ~NcclOp() override { cudaEventDestroy(event_); }

  bool test() override {
    if (done_) return true;
    const cudaError_t e = cudaEventQuery(event_);
    if (e == cudaSuccess) return done_ = true;
    if (e != cudaErrorNotReady) {
      status_ = cuda_check(e, what_);
      return done_ = true;
    }
    ncclResult_t async = ncclSuccess;
    if (c_->comm_ != nullptr && ncclCommGetAsyncError(c_->comm_, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      status_ = nccl_check(async, what_);
      return done_ = true;
    }
    return false;
  }
  absl::Status wait() override {
    const Clock::time_point t0 = Clock::now();
    while (!test()) {
      if (std::chrono::duration<double>(Clock::now() - start_).count() > timeout_s_) {
        status_ = c_->abort_after_deadline(what_);
        done_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    c_->wait_s_ += std::chrono::duration<double>(Clock::now() - t0).count();
    return status_;
  }

 private:
  NcclCommunicator* c_;
  std::string what_;
  cudaEvent_t event_;
  Clock::time_point start_;
  double timeout_s_;
  bool done_ = false;
  absl::Status status_;
};

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create(Communicator& bootstrap, int device,
                                                                          std::string name) {
  MEMTRAIN_RETURN_IF_ERROR(cuda_check(cudaSetDevice(device), absl::StrCat("cudaSetDevice(", device, ")")));
  ncclUniqueId id{};
  if (bootstrap.rank() == 0) MEMTRAIN_RETURN_IF_ERROR(nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  MEMTRAIN_RETURN_IF_ERROR(bootstrap.broadcast(&id, sizeof(id), DType::kU8, 0));
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator());
  c->device_ = device;
  c->name_ = std::move(name);
  c->timeout_s_ = bootstrap.timeout_s();
  MEMTRAIN_RETURN_IF_ERROR(nccl_check(ncclCommInitRank(&c->comm_, bootstrap.size(), id, bootstrap.rank()),
                                      absl::StrCat("ncclCommInitRank for ", c->name_)));
  MEMTRAIN_RETURN_IF_ERROR(c->init_after_comm(bootstrap.world_ranks()));
  return c;
}

absl::Status NcclCommunicator::init_after_comm(const std::vector<int>& world_ranks) {
  MEMTRAIN_RETURN_IF_ERROR(nccl_check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank"));
  MEMTRAIN_RETURN_IF_ERROR(nccl_check(ncclCommCount(comm_, &size_), "ncclCommCount"));
  MEMTRAIN_RETURN_IF_ERROR(cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
  MEMTRAIN_RETURN_IF_ERROR(cuda_check(cudaMalloc(&scratch_, 4), "cudaMalloc"));
  world_ranks_ = world_ranks;
  return absl::OkStatus();
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr) {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  if (scratch_ != nullptr) cudaFree(scratch_);
}

absl::Status NcclCommunicator::abort_after_deadline(const std::string& what) {
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);  // ends kernels that wait for peers that will not come
    comm_ = nullptr;
  }
  const std::string message =
      absl::StrCat(what, ": not done after ", timeout_s_, " s; NCCL cannot tell which ranks did not arrive");
  poisoned_ = absl::DeadlineExceededError(message);
  return poisoned_;
}

template <class F>
CommHandle NcclCommunicator::run(const std::string& what, int64_t bytes, F&& enqueue) {
  if (!poisoned_.ok() || comm_ == nullptr) {
    return CommHandle::failed(absl::FailedPreconditionError(
        absl::StrCat(what, ": communicator unusable after an earlier failure: ", poisoned_.message())));
  }
  absl::Status s = cuda_check(cudaSetDevice(device_), "cudaSetDevice");
  if (s.ok()) s = nccl_check(ncclGroupStart(), "ncclGroupStart");
  if (s.ok()) s = enqueue();
  const absl::Status end = nccl_check(ncclGroupEnd(), what);
  if (s.ok()) s = end;
  cudaEvent_t done = nullptr;
  if (s.ok()) s = cuda_check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
  if (s.ok()) s = cuda_check(cudaEventRecord(done, stream_), "cudaEventRecord");
  if (!s.ok()) {
    if (done != nullptr) cudaEventDestroy(done);
    return CommHandle::failed(absl::Status(s.code(), absl::StrCat(what, ": ", s.message())));
  }
  bytes_sent_ += bytes;
  return CommHandle(std::make_unique<NcclOp>(this, what, done));
}

CommHandle NcclCommunicator::all_reduce_async(const void* send, void* recv, int64_t count, DType dtype,
                                              ReduceOp op) {
  const std::string what = absl::StrCat("all_reduce(", reduce_op_name(op), ", ", count, " x ", dtype_name(dtype),
                                        ") on ", describe());
  ncclDataType_t t;
  if (!nccl_reduce_type(dtype, &t)) return CommHandle::failed(absl::UnimplementedError(what + ": cannot reduce"));
  if (count < 0) return CommHandle::failed(absl::InvalidArgumentError(what + ": negative count"));
  return run(what, ring_all_reduce_bytes(count, dtype_size(dtype), size_, rank_), [&] {
    return nccl_check(ncclAllReduce(send, recv, static_cast<size_t>(count), t, nccl_op(op), comm_, stream_), what);
  });
}

CommHandle NcclCommunicator::reduce_scatter_v_async(const void* send, void* recv, std::span<const int64_t> counts,
                                                    DType dtype, ReduceOp op) {
  const std::string what = absl::StrCat("reduce_scatter(", reduce_op_name(op), ", ", dtype_name(dtype), ") on ",
                                        describe());
  ncclDataType_t t;
  if (!nccl_reduce_type(dtype, &t)) return CommHandle::failed(absl::UnimplementedError(what + ": cannot reduce"));
  if (absl::Status s = check_counts(counts, size_, what); !s.ok()) return CommHandle::failed(s);
  const bool even = std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; });
  std::vector<int64_t> c(counts.begin(), counts.end());
  return run(what, ring_gather_bytes(counts, dtype_size(dtype), rank_), [&]() -> absl::Status {
    if (even) {
      return nccl_check(ncclReduceScatter(send, recv, static_cast<size_t>(c[0]), t, nccl_op(op), comm_, stream_), what);
    }
    int64_t offset = 0;  // uneven: one reduce to each rank
    for (int k = 0; k < size_; ++k) {
      MEMTRAIN_RETURN_IF_ERROR(nccl_check(ncclReduce(at(send, offset, dtype), recv, static_cast<size_t>(c[k]), t,
                                                     nccl_op(op), k, comm_, stream_), what));
      offset += c[k];
    }
    return absl::OkStatus();
  });
}

CommHandle NcclCommunicator::all_gather_v_async(const void* send, void* recv, std::span<const int64_t> counts,
                                                DType dtype) {
  const std::string what = absl::StrCat("all_gather(", dtype_name(dtype), ") on ", describe());
  if (absl::Status s = check_counts(counts, size_, what); !s.ok()) return CommHandle::failed(s);
  const bool even = std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; });
  std::vector<int64_t> c(counts.begin(), counts.end());
  return run(what, ring_gather_bytes(counts, dtype_size(dtype), rank_), [&]() -> absl::Status {
    if (even) return nccl_check(ncclAllGather(send, recv, nbytes(c[0], dtype), ncclUint8, comm_, stream_), what);
    int64_t offset = 0;  // uneven: every rank broadcasts its block
    for (int k = 0; k < size_; ++k) {
      const void* src = k == rank_ ? send : at(recv, offset, dtype);
      MEMTRAIN_RETURN_IF_ERROR(nccl_check(
          ncclBroadcast(src, at(recv, offset, dtype), nbytes(c[k], dtype), ncclUint8, k, comm_, stream_), what));
      offset += c[k];
    }
    return absl::OkStatus();
  });
}

CommHandle NcclCommunicator::broadcast_async(void* data, int64_t count, DType dtype, int root) {
  const std::string what = absl::StrCat("broadcast(", count, " x ", dtype_name(dtype), " from ", root, ") on ",
                                        describe());
  if (count < 0 || root < 0 || root >= size_)
    return CommHandle::failed(absl::InvalidArgumentError(what + ": bad count or root"));
  const bool forwards = size_ > 1 && rank_ != (root + size_ - 1) % size_;  // the chain model of communicator.h
  const int64_t bytes = forwards ? static_cast<int64_t>(nbytes(count, dtype)) : 0;
  return run(what, bytes, [&] {
    return nccl_check(ncclBroadcast(data, data, nbytes(count, dtype), ncclUint8, root, comm_, stream_), what);
  });
}

CommHandle NcclCommunicator::send_async(const void* data, int64_t count, DType dtype, int dst, int tag) {
  const std::string what = absl::StrCat("send(", count, " x ", dtype_name(dtype), " to ", dst, ") on ", describe());
  if (count < 0 || dst < 0 || dst >= size_)
    return CommHandle::failed(absl::InvalidArgumentError(what + ": bad count or rank"));
  // NCCL has no tags: messages between two ranks arrive in the order they were sent.
  return run(what, static_cast<int64_t>(nbytes(count, dtype)), [&] {
    return nccl_check(ncclSend(data, nbytes(count, dtype), ncclUint8, dst, comm_, stream_), what);
  });
}

CommHandle NcclCommunicator::recv_async(void* data, int64_t count, DType dtype, int src, int tag) {
  const std::string what = absl::StrCat("recv(", count, " x ", dtype_name(dtype), " from ", src, ") on ", describe());
  if (count < 0 || src < 0 || src >= size_)
    return CommHandle::failed(absl::InvalidArgumentError(what + ": bad count or rank"));
  return run(what, 0, [&] {
    return nccl_check(ncclRecv(data, nbytes(count, dtype), ncclUint8, src, comm_, stream_), what);
  });
}

CommHandle NcclCommunicator::all_to_all_v_async(const void* send, std::span<const int64_t> send_counts, void* recv,
                                                std::span<const int64_t> recv_counts, DType dtype) {
  const std::string what = absl::StrCat("all_to_all(", dtype_name(dtype), ") on ", describe());
  if (absl::Status s = check_counts(send_counts, size_, what); !s.ok()) return CommHandle::failed(s);
  if (absl::Status s = check_counts(recv_counts, size_, what); !s.ok()) return CommHandle::failed(s);
  int64_t bytes = 0;
  for (int k = 0; k < size_; ++k)
    if (k != rank_) bytes += static_cast<int64_t>(nbytes(send_counts[k], dtype));
  std::vector<int64_t> sc(send_counts.begin(), send_counts.end()), rc(recv_counts.begin(), recv_counts.end());
  return run(what, bytes, [&]() -> absl::Status {
    int64_t so = 0, ro = 0;
    for (int k = 0; k < size_; ++k) {
      if (sc[k] > 0) {
        MEMTRAIN_RETURN_IF_ERROR(
            nccl_check(ncclSend(at(send, so, dtype), nbytes(sc[k], dtype), ncclUint8, k, comm_, stream_), what));
      }
      if (rc[k] > 0) {
        MEMTRAIN_RETURN_IF_ERROR(
            nccl_check(ncclRecv(at(recv, ro, dtype), nbytes(rc[k], dtype), ncclUint8, k, comm_, stream_), what));
      }
      so += sc[k];
      ro += rc[k];
    }
    return absl::OkStatus();
  });
}

CommHandle NcclCommunicator::barrier_async() {
  const std::string what = absl::StrCat("barrier on ", describe());
  return run(what, ring_all_reduce_bytes(1, 4, size_, rank_), [&] {
    return nccl_check(ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, stream_), what);
  });
}

absl::StatusOr<std::unique_ptr<Communicator>> NcclCommunicator::split(int color, int key, std::string name) {
  if (!poisoned_.ok() || comm_ == nullptr) return absl::FailedPreconditionError(absl::StrCat("split of ", describe()));
  MEMTRAIN_RETURN_IF_ERROR(cuda_check(cudaSetDevice(device_), "cudaSetDevice"));
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator());
  c->device_ = device_;
  c->name_ = std::move(name);
  c->timeout_s_ = timeout_s_;
  MEMTRAIN_RETURN_IF_ERROR(nccl_check(ncclCommSplit(comm_, color, key, &c->comm_, nullptr), "ncclCommSplit"));
  MEMTRAIN_RETURN_IF_ERROR(c->init_after_comm({}));
  // The new communicator's world ranks: gather each member's through the new communicator itself.
  int32_t* dev = nullptr;
  MEMTRAIN_RETURN_IF_ERROR(cuda_check(cudaMalloc(reinterpret_cast<void**>(&dev), 4 * c->size_), "cudaMalloc"));
  const int32_t mine = world_ranks_[rank_];
  absl::Status s = cuda_check(cudaMemcpy(dev + c->rank_, &mine, 4, cudaMemcpyHostToDevice), "cudaMemcpy");
  if (s.ok()) s = c->all_gather(dev + c->rank_, dev, 1, DType::kI32);
  std::vector<int32_t> ranks(c->size_);
  if (s.ok()) s = cuda_check(cudaMemcpy(ranks.data(), dev, 4 * c->size_, cudaMemcpyDeviceToHost), "cudaMemcpy");
  cudaFree(dev);
  MEMTRAIN_RETURN_IF_ERROR(s);
  c->world_ranks_.assign(ranks.begin(), ranks.end());
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace memtrain::parallel
