#include "parallel/value_shard.h"

#include "absl/strings/str_cat.h"

namespace memtrain::parallel {

absl::StatusOr<std::unique_ptr<ValueShard>> ValueShard::create(const ShardLayout& layout, SwapTier* tier) {
  std::unique_ptr<ValueShard> shard(new ValueShard(tier));
  shard->units_.resize(layout.num_units());
  if (tier == nullptr) {
    MEMTRAIN_ASSIGN_OR_RETURN(shard->resident_,
                              Tensor::zeros({layout.shard_size()}, DType::kF32, MemCategory::kParameters));
    shard->base_ = shard->resident_.f32();
    for (int u = 0; u < layout.num_units(); ++u) shard->units_[u].pos = 4 * layout.unit_shard_pos(u);
    return shard;
  }
  int64_t at = 0;
  for (int u = 0; u < layout.num_units(); ++u) {
    Unit& unit = shard->units_[u];
    unit.pos = at;
    unit.bytes = unit_bytes(layout, u);
    unit.where = Where::kOut;
    at += unit.bytes;
  }
  MEMTRAIN_ASSIGN_OR_RETURN(shard->pages_, PagedBuffer::create(at, MemCategory::kParameters, "the parameter shard"));
  shard->base_ = reinterpret_cast<float*>(shard->pages_->data());
  return shard;
}

ValueShard::~ValueShard() {
  for (Unit& u : units_) {
    if (u.ticket == 0) continue;
    tier_->wait(u.ticket).IgnoreError();
    tier_->release(u.ticket);
  }
}

absl::Status ValueShard::start_in(int unit) {
  Unit& u = units_[unit];
  if (tier_ == nullptr || u.bytes == 0) return absl::OkStatus();
  if (u.where == Where::kGoingOut) {  // still in memory: keep it, once the write no longer reads it
    MEMTRAIN_RETURN_IF_ERROR(tier_->wait(u.ticket));
    u.where = Where::kIn;
  } else if (u.where == Where::kOut) {
    MEMTRAIN_RETURN_IF_ERROR(pages_->commit(u.pos, u.bytes));
    if (u.ticket == 0) {  // never written out: the fresh pages' zeros are its values
      u.where = Where::kIn;
      return absl::OkStatus();
    }
    absl::Status read = tier_->read(u.ticket, view(u));
    if (!read.ok()) {
      pages_->decommit(u.pos, u.bytes);
      return read;
    }
    u.where = Where::kComingIn;
  }
  return absl::OkStatus();
}

absl::Status ValueShard::finish_in(int unit) {
  MEMTRAIN_RETURN_IF_ERROR(start_in(unit));
  Unit& u = units_[unit];
  if (u.where == Where::kComingIn) {
    MEMTRAIN_RETURN_IF_ERROR(tier_->wait(u.ticket));
    u.where = Where::kIn;
  }
  return absl::OkStatus();
}

void ValueShard::mark_written(int unit) {
  if (tier_ == nullptr) return;
  MEMTRAIN_CHECK_MSG(units_[unit].where == Where::kIn, absl::StrCat("unit ", unit, " written while not in memory"));
  units_[unit].written = true;
}

absl::Status ValueShard::start_out(int unit) {
  Unit& u = units_[unit];
  if (tier_ == nullptr || u.bytes == 0) return absl::OkStatus();
  if (u.where == Where::kComingIn) MEMTRAIN_RETURN_IF_ERROR(finish_in(unit));
  if (u.where != Where::kIn) return absl::OkStatus();
  if (!u.written) {  // the tier holds these values already
    pages_->decommit(u.pos, u.bytes);
    u.where = Where::kOut;
    return absl::OkStatus();
  }
  if (u.ticket != 0) tier_->release(u.ticket);
  u.ticket = 0;
  MEMTRAIN_ASSIGN_OR_RETURN(u.ticket, tier_->write(view(u)));
  u.written = false;
  u.where = Where::kGoingOut;
  return absl::OkStatus();
}

absl::Status ValueShard::finish_out(int unit) {
  MEMTRAIN_RETURN_IF_ERROR(start_out(unit));
  Unit& u = units_[unit];
  if (u.where == Where::kGoingOut) {
    MEMTRAIN_RETURN_IF_ERROR(tier_->wait(u.ticket));
    pages_->decommit(u.pos, u.bytes);
    u.where = Where::kOut;
  }
  return absl::OkStatus();
}

absl::Status ValueShard::all_in(bool will_write) {
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) MEMTRAIN_RETURN_IF_ERROR(start_in(u));
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
    MEMTRAIN_RETURN_IF_ERROR(finish_in(u));
    if (will_write) mark_written(u);
  }
  return absl::OkStatus();
}

absl::Status ValueShard::all_out() {
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) MEMTRAIN_RETURN_IF_ERROR(start_out(u));
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) MEMTRAIN_RETURN_IF_ERROR(finish_out(u));
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
