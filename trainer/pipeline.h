// Pipeline parallelism in training: this pp rank's stage of the model runs its part of every micro-batch in the
// order the schedule (parallel/pipeline_schedule.h) lists, receiving activations from the previous stage and
// output gradients from the next over the pp communicator; sends are asynchronous and overlap what follows.
//
// The runner sits between the model and the data-parallel engine as the model's UnitHooks. ZeRO stages 0 and 1
// reduce a step's sum of every micro-batch's gradient, so a unit's grads_ready reaches the engine only with the
// step's last backward of that unit; stages 2 and 3 reduce each micro-batch's gradient as backward finishes it, as
// without a pipeline, so a unit's full gradient lives only from its first write to its reduction. Under zero
// bubble, backward-input runs the stage's backward with the projections' weight gradients deferred in the
// micro-batch's store, backward-weight runs them, and the engine hears of every unit (last first) once the step's
// last weight gradient is done (at stages 2-3 a unit's full gradient accumulates over the step until then).
//
// MPI moves data only inside MPI calls, so the runner keeps the next receive posted and tests it and the sends in
// flight at every unit boundary of the model's compute (the hooks), which lets transfers proceed while the stage
// computes.
//
// A tied token embedding has a copy on the first and on the last stage (as Megatron keeps it): the last stage moves
// each forward's gradient of its copy (the head's part) into a sum and sends it after its last forward to the first
// stage, which adds it before its last reduction of the embedding; after the optimizer step the first stage sends
// the updated values back. The last stage's copy is not counted in the gradient norm.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/unit_hooks.h"
#include "trainer/config.h"

namespace memtrain::trainer {

// Stage `stage` of `stages`: parallel.pp_layers's share, or an even split of model.n_layer (checked before).
model::PipelineStage pipeline_stage(const Config& cfg, int stage, int stages);
// The models pp rank `rank` holds, registered into `params` in chunk order: the whole model without a pipeline,
// else parallel.pp_chunks stages, chunk c being stage c * pp + rank of pp * pp_chunks (Megatron's interleaving).
absl::StatusOr<std::vector<std::unique_ptr<model::Model>>> create_rank_models(const Config& cfg,
                                                                              model::ParamSet& params,
                                                                              const model::TensorParallel& tp,
                                                                              const model::ContextParallel& cp,
                                                                              int rank, int pp);

class Outbox;

class PipelineRunner final : public parallel::UnitHooks {
 public:
  ~PipelineRunner() override;
  // models: this rank's stages in chunk order (create_rank_models; their hooks are pointed at the runner), params
  // theirs; engine: where unit calls go on. Not owned.
  static absl::StatusOr<std::unique_ptr<PipelineRunner>> create(const Config& cfg, parallel::Communicator& pp,
                                                                std::vector<model::Model*> models,
                                                                model::ParamSet& params,
                                                                parallel::DataParallel& engine);
  // One step's forwards and backwards of tokens[k], targets[k] (k < micro-batches), each (B, T) as for
  // Model::forward, in schedule order. Returns the sum of token losses on the last stage (0 on the others).
  absl::StatusOr<double> run_step(const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets,
                                  float grad_scale);
  // Forward only (evaluation): the loss sum of one batch on the last stage, 0 on the others.
  absl::StatusOr<double> forward_only(const Tensor& tokens, const Tensor& targets);
  // After the optimizer step: the last stage's copy of a tied embedding takes the first stage's values.
  absl::Status sync_tied_values();
  // Sum of `local` over the pp ranks, in rank order.
  absl::StatusOr<double> sum(double local);
  // The last run_step's wall time and the part of it this rank spent waiting for messages (its bubble).
  double last_step_s() const { return step_s_; }
  double last_wait_s() const { return wait_s_; }

  absl::Status acquire(int unit, parallel::UnitUse use) override;
  absl::Status release(int unit, parallel::UnitUse use) override;
  absl::Status grads_ready(int unit) override;

 private:
  PipelineRunner(parallel::Communicator& pp, std::vector<model::Model*> models, int units,
                 parallel::DataParallel& engine, parallel::PipelineSchedule schedule, model::Param* tied);
  // The (rows, C) activation one micro-batch hands between stages.
  absl::StatusOr<Tensor> activation(const Tensor& tokens) const;
  // The unit's gradient is ready for the engine (`last`: complete for the step, so the tied embedding's other part
  // is added first).
  absl::Status finish_unit(int unit, bool last);
  bool zero_bubble() const { return schedule_.shape.kind == parallel::ScheduleKind::kZeroBubble; }
  // Tests the transfers in flight (MPI progresses only inside its calls).
  absl::Status progress();
  // Posts the receive of the first receive action at or after action `from` of this rank's list, if any.
  absl::Status post_next_receive(size_t from, const std::vector<Tensor>& tokens);
  bool first() const { return models_.front()->stage().first; }  // this rank holds the first stage
  bool last() const { return models_.back()->stage().last; }     // ... the last stage
  int stages() const { return schedule_.shape.stages(); }
  int stage_of(int chunk) const { return schedule_.shape.stage_of(pp_.rank(), chunk); }

  parallel::Communicator& pp_;
  std::vector<model::Model*> models_;  // per chunk
  parallel::DataParallel& engine_;
  parallel::PipelineSchedule schedule_;
  model::Param* tied_;  // this stage's copy of a tied embedding (first or last stage), or null
  int tied_entry_ = -1;  // its index in the engine's tensors
  std::vector<int> grads_ready_calls_;  // per unit, this step
  Tensor tied_grad_;  // first stage: the last stage's part; last stage: the sum of its forwards' parts, then sent
  parallel::CommHandle tied_transfer_;
  double step_s_ = 0, wait_s_ = 0;
  std::unique_ptr<Outbox> outbox_;  // sends in flight
  // The next receive in schedule order, posted ahead: its action index (or -1), buffer and handle.
  int64_t next_recv_ = -1;
  Tensor next_recv_buf_;
  parallel::CommHandle next_recv_handle_;
};

}  // namespace memtrain::trainer
