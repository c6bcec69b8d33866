#include "trainer/plan.h"

#include <algorithm>
#include <array>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/model.h"
#include "offload/ssd_swap.h"
#include "optim/lisa.h"
#include "optim/matrix_owners.h"
#include "optim/offloaded_adamw.h"
#include "optim/optimizer.h"
#include "parallel/data_parallel.h"
#include "parallel/pipeline_simulator.h"
#include "parallel/shard_layout.h"
#include "trainer/distributed.h"
#include "trainer/pipeline.h"

namespace memtrain::trainer {

namespace {

// offload.parameters: no shard at rest. In forward (backward), at unit u's turn: units u and u + 1 (u - 1)
// gathered, the next one's slice (its gather reads it) and the one after it (read ahead); in the optimizer step
// three slices in a row (one going out, one updated, one coming in).
int64_t offloaded_parameter_bytes(const parallel::ShardLayout& layout) {
  const int U = layout.num_units();
  auto pages = [&](int u) { return u >= 1 && u < U ? parallel::ValueShard::unit_bytes(layout, u) : 0; };
  auto gathered = [&](int u) { return u >= 0 && u < U ? 4 * layout.unit_padded(u) : 0; };
  int64_t peak = 0;
  for (int u = 0; u < U; ++u) {
    peak = std::max(peak, gathered(u) + gathered(u + 1) + pages(u + 1) + pages(u + 2));
    peak = std::max(peak, gathered(u) + gathered(u - 1) + pages(u - 1) + pages(u - 2));
    peak = std::max(peak, parallel::ValueShard::unit_bytes(layout, u) + pages(u - 1) + pages(u + 1));
  }
  return peak;
}

}  // namespace

absl::StatusOr<MemoryPlan> plan_memory(const Config& cfg, int world_size, int pp_rank) {
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::MeshShape mesh, parallel::resolve_mesh_shape(cfg.parallel, world_size));
  MEMTRAIN_RETURN_IF_ERROR(check_mesh_fits_model(cfg, mesh));
  // Shapes only: nothing is allocated. Tensor-parallel rank 0 holds the most.
  model::ParamSet params;
  MEMTRAIN_ASSIGN_OR_RETURN(
      std::vector<std::unique_ptr<model::Model>> models,
      create_rank_models(cfg, params, model::TensorParallel::shapes_of_rank(0, mesh.tp, cfg.parallel.sequence_parallel),
                         model::ContextParallel::shapes_of_rank(0, mesh.cp, true, static_cast<int>(cfg.parallel.cp_a2a)), pp_rank, mesh.pp));
  const int64_t B = cfg.train.batch_size, T = cfg.train.resolved_seq_len(cfg.model.block_size);
  const model::Model* model = models[0].get();
  // A rank's chunks may differ (the embeddings, the head, parallel.pp_layers): each figure is the largest chunk's.
  auto most = [&](int64_t (model::Model::*figure)(int64_t, int64_t) const) {
    int64_t m = 0;
    for (const auto& chunk : models) m = std::max(m, (chunk.get()->*figure)(B, T));
    return m;
  };
  const int d = mesh.dp * mesh.cp, stage = static_cast<int>(cfg.zero.stage);  // ZeRO shards over dp x cp
  std::vector<std::vector<int64_t>> units(params.num_units());
  for (const auto& p : params.all()) units[p->unit].push_back(shape_numel(p->local_shape));
  const parallel::ShardLayout layout(std::move(units), d);
  const int U = layout.num_units();

  MemoryPlan plan;
  plan.parameters_count = params.numel();
  if (params.frozen_set()) plan.frozen_count = params.frozen_set()->numel();
  plan.ranks = d;
  auto at = [&](MemCategory c) -> int64_t& { return plan.bytes[static_cast<int>(c)]; };
  // Sizes in the order backward finishes units (the last first); a pair is two units next to each other.
  int64_t largest_pair = 0;
  for (int u = 0; u + 1 < U; ++u)
    largest_pair = std::max(largest_pair, layout.unit_padded(u) + layout.unit_padded(u + 1));
  // Rank 0 owns the most (padding sits at the ends of units, in the last ranks' slices): the optimizer's state for
  // its pieces.
  int64_t optimizer_state = 0;
  optim::MemberOptimizerBytes owner_extra;  // optim::MatrixOwners' copies and receive area (the largest of each)
  if (uses_matrix_owners(cfg, mesh)) {
    std::vector<model::ParamSet> parts;
    MEMTRAIN_ASSIGN_OR_RETURN(optim::MatrixGroup group, matrix_group_shapes(cfg, mesh, pp_rank, parts));
    for (const optim::MemberOptimizerBytes& m : optim::matrix_owner_bytes(group, cfg.optim)) {
      optimizer_state = std::max(optimizer_state, m.state);
      owner_extra.gradient_copy = std::max(owner_extra.gradient_copy, m.gradient_copy);
      owner_extra.value_copy = std::max(owner_extra.value_copy, m.value_copy);
      owner_extra.staging = std::max(owner_extra.staging, m.staging);
    }
  } else {
    std::vector<optim::OptimTarget> targets;
    for (const parallel::ShardSegment& s : stage == 0 ? layout.whole_entries() : layout.segments_of_rank(0))
      targets.push_back({params.all()[s.entry].get(), nullptr, nullptr, s.n, s.offset});
    if (cfg.offload.optimizer_on_ssd()) {
      optimizer_state = optim::OffloadedAdamW::peak_state_bytes(targets);  // three groups in memory at a time
    } else if (cfg.optim.lisa_layers > 0) {
      optimizer_state = optim::Lisa::peak_state_bytes(targets, cfg.optim);  // the draw with the most
    } else {
      for (const optim::OptimTarget& t : targets) optimizer_state += optim::optimizer_state_bytes(t, cfg.optim);
    }
  }
  // The sum of the n largest units: what a pipeline, whose micro-batches interleave, may hold at once.
  auto largest = [&](int n) {
    std::vector<int64_t> sizes;
    for (int u = 0; u < U; ++u) sizes.push_back(layout.unit_padded(u));
    std::sort(sizes.rbegin(), sizes.rend());
    int64_t sum = 0;
    for (int k = 0; k < std::min<int>(n, U); ++k) sum += sizes[k];
    return sum;
  };
  const bool pipeline = mesh.pp > 1, zero_bubble = pipeline && cfg.parallel.pp_schedule == "zb-h1";
  const bool last_stage = pipeline && pp_rank + 1 == mesh.pp;
  if (stage <= 2) {
    at(MemCategory::kParameters) = 4 * layout.full_size();
  } else if (cfg.offload.parameters_offloaded()) {
    at(MemCategory::kParameters) = offloaded_parameter_bytes(layout);
  } else {
    // The shard, the hpZ copy, and at most two gathered units (the one in use and the next, prefetched); in a
    // pipeline also a unit prefetched for a use that comes after another chunk's or micro-batch's.
    const int64_t h = cfg.zero.hpz_partition_size;
    const int64_t secondary = cfg.zero.hpz_active(d) ? layout.full_size() / h : 0;
    at(MemCategory::kParameters) = 4 * (layout.shard_size() + secondary + (pipeline ? largest(3) : largest_pair));
  }
  const bool zeroth_order = cfg.optim.name == "zo_sgd";  // forwards only: no gradients
  if (zeroth_order) {
    at(MemCategory::kGradients) = 0;
  } else if (stage <= 1) {
    // A second buffer accumulates micro-batches (a pipeline accumulates in place).
    at(MemCategory::kGradients) = 4 * layout.full_size() * (cfg.train.grad_accum > 1 && !pipeline ? 2 : 1);
  } else {
    // The reduced shard plus full unit gradients: a unit's lives until the unit after the next one is allocated,
    // so two neighbours at a time, and a tied head's unit 0 (written in the head's forward) all through backward.
    // In a pipeline: the unit in backward, the last one reduced (any two units, as chunks and micro-batches
    // interleave) and on the last stage the head's unit, written in every forward; under zero bubble every unit
    // of the stage until the step's last weight gradient.
    int64_t alive = 0;
    if (zero_bubble) {
      alive = layout.full_size();
    } else if (pipeline) {
      alive = largest(2) + (last_stage ? layout.unit_padded(U - 1) : 0);
    } else if (cfg.model.tied()) {
      alive = layout.unit_padded(U - 1);
      for (int u = 1; u + 1 < U; ++u) alive = std::max(alive, layout.unit_padded(u) + layout.unit_padded(u + 1));
      alive += layout.unit_padded(0);
    } else {
      alive = largest_pair;
    }
    at(MemCategory::kGradients) = 4 * (layout.shard_size() + alive);
  }
  at(MemCategory::kParameters) += owner_extra.value_copy;
  // A fine-tune's frozen base: this rank's tp part on every data-parallel rank, fp32 or (QLoRA) NF4.
  if (const model::ParamSet* frozen = params.frozen_set())
    at(MemCategory::kParameters) += frozen->local_value_bytes(cfg.lora.nf4());
  // SLTrain: each sparse value's position in this rank's part of its weight (int32), on every data-parallel rank.
  for (const auto& p : params.all())
    if (p->name.ends_with(".sltrain.values")) at(MemCategory::kParameters) += 4 * shape_numel(p->local_shape);
  at(MemCategory::kGradients) += owner_extra.gradient_copy;
  at(MemCategory::kOptimizerState) = optimizer_state;
  // The reduction receive buffers (none with one rank).
  std::array<int64_t, 2> slots = parallel::receive_buffer_elements(
      layout, stage, static_cast<int64_t>(cfg.parallel.bucket_mb * (1 << 20)));
  if (zeroth_order) slots = {0, 0};
  at(MemCategory::kCommunication) = 4 * (slots[0] + slots[1]) + most(&model::Model::predicted_communication_bytes) +
                                    owner_extra.staging;
  if (cfg.zero.quantized_weights && d > 1) {
    // qwZ: one unit's packed slice and everyone's at a time (a gather is dequantized before the next starts).
    int64_t packed = 0;
    for (int u = 0; u < U; ++u) packed = std::max(packed, parallel::qwz_packed_bytes(layout.unit_slice(u)) * (1 + d));
    at(MemCategory::kCommunication) += packed;
  }
  int64_t batch_tensors = 2 * 4 * B * T;  // int32 inputs and targets
  int64_t activations = most(zeroth_order ? &model::Model::predicted_forward_only_peak_bytes
                                          : &model::Model::predicted_peak_activation_bytes);
  // swap_host's copies of the blocks of every micro-batch whose forward ran here and whose backward has not begun
  // (all of them after the last forward).
  auto host_swapped = [&](const std::vector<int64_t>& micro_batches) {
    int64_t bytes = 0;
    for (size_t c = 0; c < models.size(); ++c)
      bytes += micro_batches[c] * models[c]->predicted_swapped_bytes(B, T, model::LayerPolicy::kSwapHost);
    return bytes;
  };
  int64_t host_swap = zeroth_order ? 0 : host_swapped(std::vector<int64_t>(models.size(), 1));
  if (mesh.pp > 1) {
    // Every micro-batch's tokens; the largest, over the backwards of the simulated schedule, of what the rank
    // holds when one starts: that backward at its high-water mark (a zero-bubble backward-input at its own), the
    // saved activations of the other micro-batches whose forward ran here and, under zb-h1, the deferred weight
    // gradients' inputs and output gradients of those whose backward-input ran, each with its chunk's bytes; and
    // (rows, C) tensors at the stage boundaries: the next receive, posted ahead; before the last stage a received
    // gradient and a forward output whose send is in flight; after the first an input gradient being sent. (A
    // received activation is saved by the first block.) Sends complete when MPI gets to move them,
    // so a stage may hold more outputs for a while.
    const int64_t m = cfg.train.grad_accum;
    MEMTRAIN_ASSIGN_OR_RETURN(parallel::ScheduleKind kind, parallel::parse_schedule_kind(cfg.parallel.pp_schedule));
    MEMTRAIN_ASSIGN_OR_RETURN(parallel::PipelineSchedule sched,
                              parallel::make_pipeline_schedule({kind, mesh.pp, static_cast<int>(m),
                                                                static_cast<int>(models.size())}));
    MEMTRAIN_ASSIGN_OR_RETURN(parallel::PipelineTimeline tl, parallel::simulate_pipeline(sched));
    batch_tensors *= m;
    int64_t held = 0;
    for (const parallel::PipelineTimeline::Held& h : tl.held_at_backward[pp_rank]) {
      const model::Model& running = *models[h.chunk];
      int64_t bytes = zero_bubble ? running.predicted_deferring_peak_activation_bytes(B, T)
                                  : running.predicted_peak_activation_bytes(B, T);
      bytes -= running.predicted_activation_bytes(B, T);  // counted in forwarded below
      for (size_t c = 0; c < models.size(); ++c) {
        bytes += h.forwarded[c] * models[c]->predicted_activation_bytes(B, T) +
                 h.awaiting_weight[c] * models[c]->predicted_deferred_bytes(B, T);
      }
      held = std::max(held, bytes);
      std::vector<int64_t> out(h.forwarded.begin(), h.forwarded.end());
      ++out[h.chunk];  // the micro-batch whose backward starts
      host_swap = std::max(host_swap, host_swapped(out));
    }
    const Shape boundary = model->activation_shape(B, T);
    const int boundaries = 1 + (pp_rank + 1 < mesh.pp ? 2 : 0) + (pp_rank > 0 ? 1 : 0);
    activations = held + boundaries * 4 * boundary[0] * boundary[1];
    // The first stage receives the last stage's part of a tied embedding's gradient, which the last sends.
    if (cfg.model.tied() && (pp_rank == 0 || pp_rank + 1 == mesh.pp)) {
      const int64_t rows = (cfg.model.vocab_size + mesh.tp - 1) / mesh.tp;  // tp rank 0 holds the most
      at(MemCategory::kCommunication) += 4 * rows * cfg.model.n_embd;
    }
  }
  at(MemCategory::kActivations) = activations + batch_tensors;
  // Swap: swap_ssd's two staging buffers; swap_host's copies (see host_swap above).
  at(MemCategory::kSwap) = host_swap;
  if (model->activation_policy().uses_ssd_tier() || cfg.offload.uses_ssd())
    at(MemCategory::kSwap) += offload::SsdSwap::kStagingBytes;
  if (stage == 3 && cfg.offload.parameters == "host") {  // the host tier's copy of every unit's slice
    for (int u = 0; u < U; ++u) at(MemCategory::kSwap) += parallel::ValueShard::unit_bytes(layout, u);
  }
  at(MemCategory::kWorkspace) = most(&model::Model::predicted_workspace_bytes);
  for (int64_t b : plan.bytes) plan.total += b;
  plan.budget = cfg.memory.budget_bytes();
  plan.pp_rank = pp_rank;
  return plan;
}

absl::StatusOr<MemoryPlan> plan_memory_of_largest_stage(const Config& cfg, int world_size) {
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::MeshShape mesh, parallel::resolve_mesh_shape(cfg.parallel, world_size));
  MemoryPlan largest;
  std::vector<int64_t> totals;
  for (int r = 0; r < mesh.pp; ++r) {
    MEMTRAIN_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(cfg, world_size, r));
    totals.push_back(plan.total);
    if (r == 0 || plan.total > largest.total) largest = plan;
  }
  if (mesh.pp > 1) largest.stage_totals = std::move(totals);
  return largest;
}

std::string plan_table(const Config& cfg, const MemoryPlan& plan) {
  const std::string count =
      plan.frozen_count == 0 ? absl::StrCat(plan.parameters_count, " parameters")
                             : absl::StrCat(plan.frozen_count, " frozen parameters (",
                                            cfg.lora.nf4() ? "NF4" : "fp32", ") + ", plan.parameters_count, " trained");
  std::string out = absl::StrFormat("memtrain plan: %s, %s, micro-batch %d x %d, data-parallel ranks "
                                    "(dp x cp) = %d, ZeRO stage %d; bytes per rank\n",
                                    cfg.model.arch, count, cfg.train.batch_size,
                                    cfg.train.resolved_seq_len(cfg.model.block_size), plan.ranks, cfg.zero.stage);
  if (!plan.stage_totals.empty()) {
    absl::StrAppend(&out, "pipeline rank ", plan.pp_rank, " of ", plan.stage_totals.size(),
                    ", the largest; totals per pipeline rank:");
    for (int64_t t : plan.stage_totals) absl::StrAppend(&out, " ", format_bytes(t));
    absl::StrAppend(&out, "\n");
  }
  if (absl::StatusOr<model::ActivationPolicy> policy = cfg.memory.activation_policy(cfg.model.n_layer); policy.ok())
    absl::StrAppend(&out, "activations: ", policy->describe(), "\n");
  absl::StrAppend(&out, absl::StrFormat("%-16s %14s %12s\n", "category", "bytes", ""));
  for (int c = 0; c < kNumMemCategories; ++c) {
    absl::StrAppend(&out, absl::StrFormat("%-16s %14d %12s\n", mem_category_name(static_cast<MemCategory>(c)),
                                          plan.bytes[c], format_bytes(plan.bytes[c])));
  }
  absl::StrAppend(&out, absl::StrFormat("%-16s %14d %12s\n", "total", plan.total, format_bytes(plan.total)));
  if (plan.budget > 0) {
    absl::StrAppend(&out, plan.fits() ? "fits" : "does not fit", " memory.budget = ", format_bytes(plan.budget),
                    "\n");
  }
  return out;
}

std::string plan_json(const MemoryPlan& plan) {
  nlohmann::json j = nlohmann::json::object();
  for (int c = 0; c < kNumMemCategories; ++c) j[std::string(mem_category_name(static_cast<MemCategory>(c)))] = plan.bytes[c];
  j["total"] = plan.total;
  j["budget"] = plan.budget;
  j["fits"] = plan.fits();
  j["pp_rank"] = plan.pp_rank;
  if (!plan.stage_totals.empty()) j["stage_totals"] = plan.stage_totals;
  return j.dump();
}

}  // namespace memtrain::trainer
