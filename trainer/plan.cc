#include "trainer/plan.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/model.h"
#include "parallel/shard_layout.h"
#include "trainer/distributed.h"

namespace memtrain::trainer {

absl::StatusOr<MemoryPlan> plan_memory(const Config& cfg, int world_size) {
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::MeshShape mesh, parallel::resolve_mesh_shape(cfg.parallel, world_size));
  MEMTRAIN_RETURN_IF_ERROR(check_mesh_fits_model(cfg, mesh));
  model::ParamSet params;  // shapes only: nothing is allocated
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<model::Model> model, model::Model::create(cfg.model, params));
  const int64_t B = cfg.train.batch_size, T = cfg.train.resolved_seq_len(cfg.model.block_size);
  const int d = mesh.dp, stage = static_cast<int>(cfg.zero.stage);
  std::vector<std::vector<int64_t>> units(params.num_units());
  for (const auto& p : params.all()) units[p->unit].push_back(shape_numel(p->shape));
  const parallel::ShardLayout layout(std::move(units), d);
  const int U = layout.num_units();

  MemoryPlan plan;
  plan.parameters_count = params.numel();
  plan.ranks = d;
  auto at = [&](MemCategory c) -> int64_t& { return plan.bytes[static_cast<int>(c)]; };
  int64_t largest_unit = 0, largest_pair = 0, largest_block = 0;
  for (int u = 0; u < U; ++u) {
    largest_unit = std::max(largest_unit, layout.unit_padded(u));
    if (u >= 1) largest_block = std::max(largest_block, layout.unit_padded(u));
    if (u + 1 < U) largest_pair = std::max(largest_pair, layout.unit_padded(u) + layout.unit_padded(u + 1));
  }
  // Rank 0 owns the most (padding sits at the ends of units, in the last ranks' slices).
  int64_t owned = 0;
  for (const parallel::ShardSegment& s : stage == 0 ? layout.whole_entries() : layout.segments_of_rank(0)) owned += s.n;
  if (stage <= 2) {
    at(MemCategory::kParameters) = 4 * layout.full_size();
  } else {
    // The shard, the hpZ copy, and at most two gathered units (the one in use and the next, prefetched).
    const int64_t h = cfg.zero.hpz_partition_size;
    at(MemCategory::kParameters) = 4 * (layout.shard_size() + (h > 1 && h < d ? layout.full_size() / h : 0) + largest_pair);
  }
  if (stage <= 1) {
    at(MemCategory::kGradients) = 4 * layout.full_size() * (cfg.train.grad_accum > 1 ? 2 : 1);
  } else {
    // The reduced shard plus the full gradients of the unit backward is writing, the tied head's unit (written
    // from the head's forward to the end of backward) and, with d > 1, up to two units still being reduced.
    const int64_t tied = cfg.model.tied() ? layout.unit_padded(0) : 0;
    at(MemCategory::kGradients) = 4 * (layout.shard_size() + tied + (d > 1 ? 3 : 1) * largest_block);
  }
  at(MemCategory::kOptimizerState) = 8 * owned;  // AdamW: m and v in fp32
  if (d > 1) {
    // Two receive buffers: one per reduction in flight, each the size of a bucket (stage 0) or a unit.
    int64_t largest_bucket = 0, bucket = 0;
    const int64_t bucket_elems = static_cast<int64_t>(cfg.parallel.bucket_mb * (1 << 20)) / 4;
    for (int u = U - 1; u >= 0; --u) {
      bucket += layout.unit_padded(u);
      if (bucket >= bucket_elems || u == 0) {
        largest_bucket = std::max(largest_bucket, bucket);
        bucket = 0;
      }
    }
    at(MemCategory::kCommunication) = 2 * 4 * (stage == 0 ? largest_bucket : largest_unit);
  }
  const int64_t batch_tensors = 2 * 4 * B * T;  // int32 inputs and targets
  at(MemCategory::kActivations) = model->predicted_peak_activation_bytes(B, T) + batch_tensors;
  at(MemCategory::kWorkspace) = model->predicted_workspace_bytes(B, T);
  for (int64_t b : plan.bytes) plan.total += b;
  plan.budget = cfg.memory.budget_bytes();
  return plan;
}

std::string plan_table(const Config& cfg, const MemoryPlan& plan) {
  std::string out = absl::StrFormat("memtrain plan: %s, %d parameters, micro-batch %d x %d, dp = %d, ZeRO stage %d; "
                                    "bytes per rank\n",
                                    cfg.model.arch, plan.parameters_count, cfg.train.batch_size,
                                    cfg.train.resolved_seq_len(cfg.model.block_size), plan.ranks, cfg.zero.stage);
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
  return j.dump();
}

}  // namespace memtrain::trainer
