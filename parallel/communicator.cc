// The backend-independent parts of Communicator: handles, even-count conveniences and the byte formulas.
#include "parallel/communicator.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::parallel {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

namespace {
class FailedOp final : public PendingOp {
 public:
  explicit FailedOp(absl::Status s) : status_(std::move(s)) {}
  absl::Status wait() override { return status_; }
  bool test() override { return true; }

 private:
  absl::Status status_;
};
}  // namespace

CommHandle CommHandle::failed(absl::Status status) {
  return CommHandle(std::make_unique<FailedOp>(std::move(status)));
}

CommHandle& CommHandle::operator=(CommHandle&& other) {
  if (this != &other) {
    if (op_ && !done_) MEMTRAIN_CHECK_OK(wait());  // same rule as the destructor
    op_ = std::move(other.op_);
    status_ = std::move(other.status_);
    done_ = other.done_;
  }
  return *this;
}

CommHandle::~CommHandle() {
  // A handle dropped unwaited would let the transfer outlive its buffers; waiting is the only safe choice, and a
  // failure here has no caller to report to.
  if (op_ && !done_) MEMTRAIN_CHECK_OK(wait());
}

absl::Status CommHandle::wait() {
  if (!op_ || done_) return status_;
  status_ = op_->wait();
  done_ = true;
  return status_;
}

bool CommHandle::test() {
  if (!op_ || done_) return true;
  return op_->test();
}

CommHandle Communicator::reduce_scatter_async(const void* send, void* recv, int64_t recv_count, DType dtype,
                                              ReduceOp op) {
  std::vector<int64_t> counts(size(), recv_count);
  return reduce_scatter_v_async(send, recv, counts, dtype, op);
}

CommHandle Communicator::all_gather_async(const void* send, void* recv, int64_t send_count, DType dtype) {
  std::vector<int64_t> counts(size(), send_count);
  return all_gather_v_async(send, recv, counts, dtype);
}

std::string Communicator::describe() const {
  return absl::StrCat(name(), " (size ", size(), ", world ranks ", format_ranks(world_ranks()), ")");
}

int64_t ring_chunk(int64_t n, int p, int k) { return n / p + (k < n % p ? 1 : 0); }

int64_t ring_all_reduce_bytes(int64_t n, size_t elem_bytes, int p, int r) {
  if (p <= 1) return 0;
  // Reduce-scatter: rank r sends every chunk but the one it ends up owning; all-gather: every chunk but the one
  // it receives last. With the usual ring indexing those are chunks r and r+1.
  return (2 * n - ring_chunk(n, p, r) - ring_chunk(n, p, (r + 1) % p)) * static_cast<int64_t>(elem_bytes);
}

int64_t ring_gather_bytes(std::span<const int64_t> counts, size_t elem_bytes, int r) {
  const int p = static_cast<int>(counts.size());
  if (p <= 1) return 0;
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  return (total - counts[(r + 1) % p]) * static_cast<int64_t>(elem_bytes);
}

std::string format_ranks(std::span<const int> ranks) {
  if (ranks.empty()) return "none";
  // Contiguous runs print as "a-b"; a constant stride > 1 over 3+ ranks prints as a comma list anyway.
  std::string out;
  size_t i = 0;
  while (i < ranks.size()) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += j > i ? absl::StrCat(ranks[i], "-", ranks[j]) : absl::StrCat(ranks[i]);
    i = j + 1;
  }
  return out;
}

}  // namespace memtrain::parallel
