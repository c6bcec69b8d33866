// DataParallel: data parallelism over the dp communicator with ZeRO stages 0-3 and hpZ, driven by the model
// through UnitHooks. It owns the flat buffers behind every parameter's value and grad tensors (ShardLayout) and
// decides what each rank keeps:
//   stage 0  full values, full gradients; gradients all-reduced in buckets of whole units (>= bucket_bytes) as soon
//            as backward finishes them, overlapping the rest of backward; every rank updates everything.
//   stage 1  full values and gradients; each unit's gradient is reduce-scattered when ready and a rank updates
//            (and keeps optimizer state for) only its slices; values are all-gathered after the update.
//   stage 2  as 1, but a unit's full gradient exists only from its first gradient write until its reduce-scatter;
//            the reduced slices accumulate in a shard-sized buffer (micro-batches reduce one by one). A unit
//            whose gradient is written again after its reduction started (a pipeline interleaves micro-batches)
//            gets a fresh buffer once that reduction is done, and each reduction adds into the shard.
//   stage 3  as 2, and values are stored as slices only: a unit is all-gathered before each use and freed after,
//            with the next unit prefetched. With hpZ (a group communicator) forward also keeps a secondary copy
//            sharded over the group, and backward gathers from the group instead of all dp ranks. With qwZ the
//            gathers from all dp ranks move int8 values with a scale per kShardAlign block, dequantized on arrival.
//            With a parameter tier the shard goes out at the start of each step and its units come back one at a
//            time: for their all-gathers (read two units ahead of use) and, through the optimizer's residency
//            hooks, for their update.
// Reductions are summed in rank order (an all-to-all of slices, then a local ordered sum), never in MPI's order,
// and micro-batch gradients are summed one after the other, so a run on dp ranks with one micro-batch each adds
// exactly the numbers a single process with dp micro-batches adds: the two loss curves are bitwise equal.
#pragma once

#include <array>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "parallel/communicator.h"
#include "parallel/shard_layout.h"
#include "parallel/unit_hooks.h"
#include "parallel/value_shard.h"

namespace memtrain::parallel {

struct DataParallelOptions {
  int stage = 0;
  int64_t bucket_bytes = 25 << 20;
  int64_t grad_accum = 1;        // micro-batches per step
  Communicator* hpz = nullptr;   // stage 3: the dp ranks of this rank's hpZ group (consecutive dp ranks); or none
  bool quantized_weights = false;  // stage 3: gathers from all dp ranks carry int8 + per-block scales (qwZ)
  SwapTier* param_tier = nullptr;  // stage 3 without hpZ: the value shard lives there between uses (ValueShard)
  // false: no backward runs (zeroth-order training): no gradient or receive buffers, owned() grads null; only
  // forwards, the values' gathers (stage 3) and finish_step's all-gathers (stages 1-2) are used.
  bool gradients = true;
};

// One parameter as the engine sees it: the engine points *value and *grad into its buffers.
struct UnitTensor {
  Shape shape;
  Tensor* value;
  Tensor* grad;
};

// A piece of a parameter this rank stores or updates, with where its value and reduced gradient live.
struct LocalSegment {
  ShardSegment seg;
  float* value;
  float* grad;
};

// Stage-0 buckets as [lo, hi] unit ranges, in the order backward finishes them: whole units from the last down,
// each bucket closed once it holds >= bucket_bytes (or at unit 0).
std::vector<std::pair<int, int>> gradient_buckets(const ShardLayout& layout, int64_t bucket_bytes);
// Elements of the two receive buffers: reduction k of a micro-batch uses buffer k % 2, so each is as big as the
// largest bucket (stage 0) or unit (stages 1-3) of its parity in backward order. Zero with one rank.
std::array<int64_t, 2> receive_buffer_elements(const ShardLayout& layout, int stage, int64_t bucket_bytes);
// qwZ: bytes of one rank's packed slice of `elements` values (int8 values, then an fp32 scale per block).
inline int64_t qwz_packed_bytes(int64_t elements) { return elements + elements / kShardAlign * 4; }

class DataParallel final : public UnitHooks {
 public:
  // units[u] = unit u's tensors. Allocates the buffers (values zeroed: initialise stored_values()).
  static absl::StatusOr<std::unique_ptr<DataParallel>> create(Communicator& dp,
                                                              std::vector<std::vector<UnitTensor>> units,
                                                              const DataParallelOptions& options);
  ~DataParallel() override;

  const ShardLayout& layout() const { return layout_; }
  Communicator& comm() const { return dp_; }  // the dp ranks
  int stage() const { return options_.stage; }
  // The values this rank stores: every tensor whole below stage 3, its slices at stage 3. Fill them at start.
  const std::vector<LocalSegment>& stored_values() const { return stored_; }
  // What this rank's optimizer updates, with the reduced gradient of each piece (valid after finish_gradients).
  const std::vector<LocalSegment>& owned() const { return owned_; }

  // The step: begin_micro_batch(0..grad_accum-1), each followed by the model's forward and backward; then
  // finish_gradients(); the gradient norm and clipping; the optimizer on owned(); finish_step().
  absl::Status begin_micro_batch(int64_t micro);
  absl::Status finish_gradients();
  // The 2-norm of the whole reduced gradient, from fixed 256-element blocks summed in one global order.
  absl::StatusOr<double> grad_norm();
  void scale_grads(float coef);
  absl::Status finish_step();
  // sum over dp ranks of `local`, added in rank order.
  absl::StatusOr<double> sum_over_ranks(double local);
  // Stage 3: gathers every unit and keeps it until the next micro-batch (to save or sample the full model).
  absl::Status materialize_values();
  // Frees stage-3 units gathered ahead (prefetched) but never used, e.g. after an evaluation.
  void release_idle();
  // Stage 3 with a parameter tier: the shard (null otherwise), and every unit of it (or one) back in memory so that
  // stored_values() may be read and written (a checkpoint, tied values); they go out again at the next step,
  // written out as changed. No-ops without a tier.
  ValueShard* offloaded_values() const { return values_ && values_->offloaded() ? values_.get() : nullptr; }
  absl::Status bring_values_in(int unit = -1);
  absl::Status send_values_out(int unit = -1);  // the opposite; begin_micro_batch(0) sends all

  // UnitHooks
  absl::Status acquire(int unit, UnitUse use) override;
  absl::Status release(int unit, UnitUse use) override;
  absl::Status grads_ready(int unit) override;

 private:
  struct Pending {
    CommHandle handle;
    std::function<absl::Status()> on_done;  // may start a next phase by pushing a new Pending
  };
  struct UnitState {
    int refs = 0;            // stage 3: nested acquires of the values
    bool present = false;    // stage 3: gathered (or being gathered) into `gathered`
    bool gathering = false;
    CommHandle gather;
    Tensor gathered;         // stage 3: the unit's full values
    Tensor packed_send, packed_recv;  // qwZ: this rank's slice and everyone's, int8 values then fp32 scales
    bool secondary_valid = false;  // hpZ copy holds this step's values
    // Stages 2-3: this micro-batch's full gradient, from the first write until the allocation of the unit after
    // the next one (a fixed point, so the peak does not depend on how fast reductions finish).
    Tensor grad_full;
  };

  DataParallel(Communicator& dp, ShardLayout layout, std::vector<std::vector<UnitTensor>> units,
               const DataParallelOptions& options);
  absl::Status allocate();
  // The unit's value (or grad) tensors into a unit-sized buffer.
  void point(int unit, const Tensor& unit_buffer, bool grads);
  void unpoint(int unit, bool values, bool grads);
  const Tensor& reduced_full() const { return grad_accum_.defined() ? grad_accum_ : grad_full_; }
  // Stages 1-3: where this rank's reduced gradient of `unit` lives (its slice of the full buffer at stage 1, its
  // part of the shard buffer at stages 2-3), unit_slice(unit) elements.
  float* reduced_slice(int unit) const;

  absl::Status start_gather(int unit);  // from the hpZ group when its copy is valid, else from all dp ranks
  absl::Status finish_gather(int unit);
  // After unit's gather completed: an offloaded shard's slice goes out again.
  absl::Status gathered(int unit);
  void drop_unit(int unit);
  absl::Status start_bucket(int bucket);                 // stage 0
  absl::Status start_unit_reduce_scatter(int unit);      // stages 1-3
  void push(CommHandle handle, std::function<absl::Status()> on_done);
  absl::Status complete_front();  // waits for the oldest operation and runs its continuation
  absl::Status poll();            // completes finished operations, in order
  absl::Status drain();           // waits for every operation, then frees reduced unit gradients
  absl::Status post_followups();  // stage 0: waits for started buckets' first phase and posts their all-gathers
  // Receive buffer `slot` for the next reduction, after the reduction holding it finished and its follow-up was
  // posted. Bucket b (stage 0) or the k-th unit from the last (stages 1-3) uses slot k % 2, so that two reductions
  // in a row in backward order use both and one runs while the next unit's backward computes (and each slot is
  // sized for its parity: receive_buffer_elements), whatever order a pipeline reduces units in.
  absl::StatusOr<int> take_slot(int slot);
  // Stages 2-3, before a unit's full gradient is allocated: frees those of every reduced unit but the latest.
  absl::Status free_reduced_grads(bool keep_latest);
  void ordered_sum(const float* chunks, int64_t n, float* out, bool accumulate) const;

  Communicator& dp_;
  ShardLayout layout_;
  std::vector<std::vector<UnitTensor>> units_;
  DataParallelOptions options_;
  int rank_, ranks_;
  std::vector<LocalSegment> stored_, owned_;
  std::vector<UnitState> state_;
  std::vector<std::pair<int, int>> buckets_;  // stage 0: [lo, hi] units, in the order backward finishes them
  std::vector<int> bucket_of_lo_;            // unit -> bucket whose lowest unit it is, or -1
  int64_t micro_ = 0;

  Tensor value_full_;    // stages 0-2
  std::unique_ptr<ValueShard> values_;  // stage 3
  bool values_out_ = true;  // offloaded: the shard is out (gathered units go out again), as it starts
  Tensor secondary_;     // stage 3 with hpZ: this rank's 1/h of every unit
  Tensor grad_full_;     // stages 0-1: the gradient backward writes
  Tensor grad_accum_;    // stages 0-1 with several micro-batches: their sum
  Tensor grad_shard_;    // stages 2-3
  std::array<Tensor, 2> slots_;      // receive buffers (communication), allocated once
  std::array<bool, 2> slot_busy_{};
  // Stage 0: the all-gather that ends a bucket's all-reduce, posted at the next grads_ready, when its slot is taken
  // again or at drain, never from a completion (which happens at different times on different ranks): MPI needs
  // every rank to post collectives on a communicator in the same order.
  std::array<std::function<void()>, 2> slot_followup_;
  std::array<int64_t, 2> slot_launch_{};
  int64_t launches_ = 0;             // reductions started in this micro-batch (orders the stage-0 follow-ups)
  std::deque<int> launched_units_;   // stages 2-3: units whose full gradient is reducing or reduced, in order
  std::vector<bool> reduced_;        // stages 2-3: the unit's reduction finished
  std::vector<bool> in_shard_;       // stages 2-3: a gradient of the unit was reduced into the shard this step
  std::deque<Pending> pending_;
};

}  // namespace memtrain::parallel
