#include "parallel/local_communicator.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace memtrain::parallel {
namespace {
CommHandle copy(const void* send, void* recv, int64_t count, DType dtype) {
  if (count < 0) return CommHandle::failed(absl::InvalidArgumentError(absl::StrCat("negative count ", count)));
  if (send != recv && count > 0) std::memmove(recv, send, static_cast<size_t>(count) * dtype_size(dtype));
  return CommHandle();
}
CommHandle one_count(std::span<const int64_t> counts, const void* send, void* recv, DType dtype) {
  if (counts.size() != 1) return CommHandle::failed(absl::InvalidArgumentError("counts must have one entry"));
  return copy(send, recv, counts[0], dtype);
}
}  // namespace

CommHandle LocalCommunicator::all_reduce_async(const void* send, void* recv, int64_t count, DType dtype, ReduceOp) {
  return copy(send, recv, count, dtype);
}
CommHandle LocalCommunicator::reduce_scatter_v_async(const void* send, void* recv, std::span<const int64_t> counts,
                                                     DType dtype, ReduceOp) {
  return one_count(counts, send, recv, dtype);
}
CommHandle LocalCommunicator::all_gather_v_async(const void* send, void* recv, std::span<const int64_t> counts,
                                                 DType dtype) {
  return one_count(counts, send, recv, dtype);
}
CommHandle LocalCommunicator::broadcast_async(void*, int64_t count, DType, int root) {
  if (root != 0 || count < 0) return CommHandle::failed(absl::InvalidArgumentError("broadcast: no such root or count"));
  return CommHandle();
}
CommHandle LocalCommunicator::send_async(const void*, int64_t, DType, int, int) {
  return CommHandle::failed(absl::FailedPreconditionError(absl::StrCat("send on ", describe(), ": no other rank")));
}
CommHandle LocalCommunicator::recv_async(void*, int64_t, DType, int, int) {
  return CommHandle::failed(absl::FailedPreconditionError(absl::StrCat("recv on ", describe(), ": no other rank")));
}
CommHandle LocalCommunicator::all_to_all_v_async(const void* send, std::span<const int64_t> send_counts, void* recv,
                                                 std::span<const int64_t> recv_counts, DType dtype) {
  if (send_counts.size() != 1 || recv_counts.size() != 1 || send_counts[0] != recv_counts[0])
    return CommHandle::failed(absl::InvalidArgumentError("all_to_all: counts must be one matching entry"));
  return copy(send, recv, send_counts[0], dtype);
}
absl::StatusOr<std::unique_ptr<Communicator>> LocalCommunicator::split(int, int, std::string name) {
  auto c = std::make_unique<LocalCommunicator>(std::move(name));
  c->set_timeout_s(timeout_s_);
  return c;
}

}  // namespace memtrain::parallel
