#include "optim/shard_residency.h"

namespace memtrain::optim {

ShardResidency::ShardResidency(const parallel::DataParallel& engine) : values_(*engine.offloaded_values()) {
  for (const parallel::LocalSegment& s : engine.owned()) unit_.push_back(s.seg.unit);
}

absl::Status ShardResidency::before(size_t target) {
  const int u = unit_[target];
  if (u == current_) return absl::OkStatus();
  current_ = u;
  MEMTRAIN_RETURN_IF_ERROR(values_.finish_in(u));
  values_.mark_written(u);
  for (size_t k = target + 1; k < unit_.size(); ++k) {
    if (unit_[k] != u) return values_.start_in(unit_[k]);  // the next unit's read
  }
  return absl::OkStatus();
}

absl::Status ShardResidency::after(size_t target) {
  const int u = unit_[target];
  if (target + 1 < unit_.size() && unit_[target + 1] == u) return absl::OkStatus();  // not its last piece
  MEMTRAIN_RETURN_IF_ERROR(values_.start_out(u));
  if (writing_ >= 0) MEMTRAIN_RETURN_IF_ERROR(values_.finish_out(writing_));
  writing_ = u;
  return absl::OkStatus();
}

absl::Status ShardResidency::finish() {
  if (writing_ >= 0) MEMTRAIN_RETURN_IF_ERROR(values_.finish_out(writing_));
  writing_ = current_ = -1;
  return absl::OkStatus();
}

}  // namespace memtrain::optim
