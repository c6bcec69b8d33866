#include "trainer/plan.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/model.h"

namespace memtrain::trainer {

absl::StatusOr<MemoryPlan> plan_memory(const Config& cfg) {
  model::ParamSet params;  // shapes only: nothing is allocated
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<model::Model> model, model::Model::create(cfg.model, params));
  const int64_t B = cfg.train.batch_size, T = cfg.train.resolved_seq_len(cfg.model.block_size);
  MemoryPlan plan;
  plan.parameters_count = params.numel();
  auto at = [&](MemCategory c) -> int64_t& { return plan.bytes[static_cast<int>(c)]; };
  at(MemCategory::kParameters) = 4 * plan.parameters_count;
  at(MemCategory::kGradients) = 4 * plan.parameters_count;
  at(MemCategory::kOptimizerState) = 8 * plan.parameters_count;  // AdamW: m and v in fp32
  const int64_t batch_tensors = 2 * 4 * B * T;                    // int32 inputs and targets
  at(MemCategory::kActivations) = model->predicted_peak_activation_bytes(B, T) + batch_tensors;
  at(MemCategory::kWorkspace) = model->predicted_workspace_bytes(B, T);
  for (int64_t b : plan.bytes) plan.total += b;
  plan.budget = cfg.memory.budget_bytes();
  return plan;
}

std::string plan_table(const Config& cfg, const MemoryPlan& plan) {
  std::string out = absl::StrFormat("memtrain plan: %s, %d parameters, micro-batch %d x %d, 1 process\n",
                                    cfg.model.arch, plan.parameters_count, cfg.train.batch_size,
                                    cfg.train.resolved_seq_len(cfg.model.block_size));
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
