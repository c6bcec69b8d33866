// ShardResidency: the optimizer's side of offload.parameters. The targets are a ZeRO-3 engine's owned() pieces, in
// order, so they come unit by unit; a unit's slice is brought in before its first piece is updated (the next
// unit's read starts then, overlapping this unit's update) and goes out after its last (the write overlapping the
// next unit's update, waited for one unit later). At most three units' slices are in memory during a step.
#pragma once

#include <vector>

#include "optim/optimizer.h"
#include "parallel/data_parallel.h"

namespace memtrain::optim {

class ShardResidency final : public ValueResidency {
 public:
  // The engine must outlive this, and hold an offloaded shard (engine.offloaded_values() != null).
  explicit ShardResidency(const parallel::DataParallel& engine);
  absl::Status before(size_t target) override;
  absl::Status after(size_t target) override;
  absl::Status finish() override;

 private:
  parallel::ValueShard& values_;
  std::vector<int> unit_;  // target -> unit
  int current_ = -1;       // the unit being updated
  int writing_ = -1;       // the unit before it, going out
};

}  // namespace memtrain::optim
