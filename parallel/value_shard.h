// ValueShard: the values a ZeRO-3 rank stores, its slice of every unit. Without a tier it is one resident buffer.
// With one (offload.parameters, ZeRO-Infinity's parameter offload) each unit's slice has its own pages in a
// PagedBuffer and lives in the tier between uses: it comes in before the unit's all-gather (read ahead of its turn)
// and before the optimizer updates it, and goes out again afterwards, so only a few units' slices are in memory at
// a time. Addresses never change, so owned() pointers, the optimizer's targets and checkpoints stay valid; a unit is
// written out only when its values changed since its last write (the optimizer, a resume), otherwise its pages are
// simply dropped. Calls come from the training thread.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/paged_buffer.h"
#include "core/swap_tier.h"
#include "core/tensor.h"
#include "parallel/shard_layout.h"

namespace memtrain::parallel {

class ValueShard {
 public:
  // Zeros. Without a tier all in memory; with one (which must outlive the shard) all out, so that a unit comes in
  // as zeros until it is first written out: a budget that holds a few units also holds the initialization.
  static absl::StatusOr<std::unique_ptr<ValueShard>> create(const ShardLayout& layout, SwapTier* tier);
  ~ValueShard();

  bool offloaded() const { return tier_ != nullptr; }
  float* unit_values(int unit) const { return base_ + units_[unit].pos / 4; }  // unit_slice(unit) floats

  // Offloaded shards only (no-ops otherwise), in any order and as often as needed:
  absl::Status start_in(int unit);   // commits the unit's pages and starts reading it back, unless in or coming
  absl::Status finish_in(int unit);  // returns once the unit's values are in memory
  void mark_written(int unit);       // its values changed (in memory): going out writes them
  absl::Status start_out(int unit);  // starts writing a changed unit out, or drops an unchanged one's pages now
  absl::Status finish_out(int unit); // returns once the unit is out and its pages are gone
  absl::Status all_in(bool will_write);
  absl::Status all_out();
  bool is_in(int unit) const { return units_[unit].where == Where::kIn; }

  // Bytes of memory one unit's slice holds when offloaded (its own pages).
  static int64_t unit_bytes(const ShardLayout& layout, int unit) {
    return PagedBuffer::round_up(layout.unit_slice(unit) * 4);
  }

 private:
  enum class Where { kIn, kComingIn, kGoingOut, kOut };
  struct Unit {
    int64_t pos = 0;    // byte offset in the buffer
    int64_t bytes = 0;  // its pages (0: a unit without values, always in)
    Where where = Where::kIn;
    bool written = false;  // memory holds values the tier does not
    uint64_t ticket = 0;   // 0: never written out (zeros)
  };
  ValueShard(SwapTier* tier) : tier_(tier) {}
  Tensor view(const Unit& u) { return pages_->view(u.pos, {u.bytes / 4}, DType::kF32); }

  SwapTier* tier_;
  Tensor resident_;                     // not offloaded
  std::shared_ptr<PagedBuffer> pages_;  // offloaded
  float* base_ = nullptr;
  std::vector<Unit> units_;
};

}  // namespace memtrain::parallel
