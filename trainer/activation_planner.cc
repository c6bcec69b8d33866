#include "trainer/activation_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/cpu/gemm.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "offload/ssd_swap.h"
#include "offload/swap_probe.h"
#include "trainer/pipeline.h"

namespace memtrain::trainer {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double probe_sgemm() {
  constexpr int64_t n = 384;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu::sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n, ThreadPool::global());
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * n * n * n / best;
}

absl::Status probe_ssd(const std::string& dir, Bandwidths& bw) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<offload::SsdSwap> tier, offload::SsdSwap::create(dir, "probe"));
  MEMTRAIN_ASSIGN_OR_RETURN(offload::SwapRates rates,
                            offload::measure_swap_rates(*tier, 8 << 20, 4, MemCategory::kWorkspace));
  bw.ssd_write = rates.write;
  bw.ssd_read = rates.read;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Bandwidths> probe_bandwidths(const Config& cfg) {
  Bandwidths bw;
  bw.flops = probe_sgemm();
  if (!cfg.offload.ssd_path.empty()) {
    // The probe's buffers are gone before training starts; the budget is for training.
    MemoryTracker& mt = MemoryTracker::host();
    const int64_t budget = mt.budget();
    mt.set_budget(0);
    absl::Status st = probe_ssd(cfg.offload.ssd_path, bw);
    mt.set_budget(budget);
    mt.reset_peaks();
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat("offload.ssd_path: ", st.message()));
  }
  return bw;
}

bool wants_auto_policies(const Config& cfg) {
  return cfg.memory.activations.size() == 1 && cfg.memory.activations[0] == "auto";
}

Config with_policies(const Config& cfg, const PolicyPlan& plan) {
  Config out = cfg;
  out.memory.activations = plan.activations;
  out.memory.recompute_segment = 1;  // the planner's recompute blocks each keep their own input
  out.train.batch_size = plan.batch_size;
  out.train.grad_accum = plan.grad_accum;
  if (plan.optimizer_on_ssd) out.offload.optimizer = "ssd";
  if (plan.parameters_on_ssd) out.offload.parameters = "ssd";
  return out;
}

std::string describe(const PolicyPlan& plan) {
  // The planner's names are valid and its recompute blocks stand alone (segments of 1).
  const absl::StatusOr<model::ActivationPolicy> policy =
      model::ActivationPolicy::parse(plan.activations, 1, static_cast<int64_t>(plan.activations.size()));
  MEMTRAIN_CHECK_OK(policy.status());
  return absl::StrFormat("%s; micro-batch %d x %d accumulated;%s%s predicted slowdown %.2fx",
                         policy->describe(), plan.batch_size, plan.grad_accum,
                         plan.optimizer_on_ssd ? " AdamW's moments on the SSD;" : "",
                         plan.parameters_on_ssd ? " the parameter shard on the SSD;" : "", plan.slowdown);
}

absl::StatusOr<PolicyPlan> plan_policies(const Config& cfg, int world_size, const Bandwidths& bw) {
  const int64_t L = cfg.model.n_layer, B = cfg.train.batch_size, T = cfg.train.resolved_seq_len(cfg.model.block_size);
  const bool ssd = !cfg.offload.ssd_path.empty() && bw.ssd_write > 0 && bw.ssd_read > 0;
  // A block's forward time and saved bytes at micro-batch b, from the whole model's figures on one rank.
  model::ParamSet shapes;
  Config keep_cfg = cfg;
  keep_cfg.memory.activations = {"keep"};
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<model::Model>> whole,
                            create_rank_models(keep_cfg, shapes, {}, {}, 0, 1));
  const double block_forward_flops_per_token = whole[0]->flops_per_token(T) / 3.0 / static_cast<double>(L);
  model::ActivationPolicy all_swapped;
  all_swapped.layers.assign(L, model::LayerPolicy::kSwapSsd);
  whole[0]->set_activation_policy(all_swapped);
  const double step_seconds = 3.0 * L * block_forward_flops_per_token * B * T * cfg.train.grad_accum / bw.flops;

  // AdamW's moments on disk: this rank's state (the keep plan's figure) read and written once per step.
  // ZeRO-3's shard on disk: read and written once by the update, and read for each micro-batch's forward and
  // backward gathers one unit ahead, so those reads cost only what they take beyond the compute they overlap.
  const bool offload_optimizer = ssd && cfg.optim.name == "adamw" && !cfg.offload.optimizer_on_ssd();
  const bool offload_parameters = ssd && !cfg.offload.parameters_offloaded() && parameter_offload_allowed(cfg).ok();
  double optimizer_io = 0, shard_bytes = 0;
  if (offload_optimizer || offload_parameters) {
    MEMTRAIN_ASSIGN_OR_RETURN(MemoryPlan keep_plan, plan_memory_of_largest_stage(keep_cfg, world_size));
    const double state = static_cast<double>(keep_plan.bytes[static_cast<int>(MemCategory::kOptimizerState)]);
    if (offload_optimizer) optimizer_io = state / bw.ssd_read + state / bw.ssd_write;
    // The keep plan's parameters: the shard and two gathered units (a little more than the shard).
    if (offload_parameters) shard_bytes = static_cast<double>(keep_plan.bytes[static_cast<int>(MemCategory::kParameters)]);
  }
  auto parameter_io = [&](int64_t accum) {
    return shard_bytes / bw.ssd_read + shard_bytes / bw.ssd_write +
           std::max(0.0, 2.0 * static_cast<double>(accum) * shard_bytes / bw.ssd_read - step_seconds);
  };

  PolicyPlan best, smallest;
  bool found = false;
  smallest.memory.total = -1;
  for (int64_t b = B; b >= 1; b /= 2) {
    if (B % b != 0) continue;
    const int64_t accum = cfg.train.grad_accum * (B / b), halvings = static_cast<int64_t>(std::log2(B / b) + 0.5);
    const double f = block_forward_flops_per_token * b * T / bw.flops;
    const double block_bytes = static_cast<double>(whole[0]->predicted_swapped_bytes(b, T, model::LayerPolicy::kSwapSsd)) / L;
    const double swap_extra = ssd ? std::max(0.0, block_bytes / bw.ssd_write - f) +
                                        std::max(0.0, block_bytes / bw.ssd_read - 2 * f)
                                  : 0;
    for (const std::pair<bool, bool>& offloads : {std::pair{false, false}, std::pair{true, false},
                                                 std::pair{false, true}, std::pair{true, true}}) {
      const bool optimizer_on_ssd = offloads.first, parameters_on_ssd = offloads.second;  // (lambdas capture these)
      if ((optimizer_on_ssd && !offload_optimizer) || (parameters_on_ssd && !offload_parameters)) continue;
      const double offload_io = (optimizer_on_ssd ? optimizer_io : 0) + (parameters_on_ssd ? parameter_io(accum) : 0);
      auto candidate = [&](int64_t s, int64_t r) -> absl::StatusOr<PolicyPlan> {
        PolicyPlan p;
        p.batch_size = b;
        p.grad_accum = accum;
        p.optimizer_on_ssd = optimizer_on_ssd || cfg.offload.optimizer_on_ssd();
        p.parameters_on_ssd = parameters_on_ssd;
        for (int64_t l = 0; l < L; ++l) p.activations.push_back(l < s ? "swap_ssd" : l < s + r ? "recompute" : "keep");
        MEMTRAIN_ASSIGN_OR_RETURN(p.memory, plan_memory_of_largest_stage(with_policies(cfg, p), world_size));
        p.slowdown = 1 + (accum * (r * f + s * swap_extra) + offload_io) / step_seconds + 0.05 * halvings;
        return p;
      };
      for (int64_t s = 0; s <= (ssd ? L : 0); ++s) {
        // More recompute blocks hold less and cost more: the fewest that fit is the best for this s.
        MEMTRAIN_ASSIGN_OR_RETURN(PolicyPlan most, candidate(s, L - s));
        if (smallest.memory.total < 0 || most.memory.total < smallest.memory.total) smallest = most;
        if (!most.memory.fits()) continue;
        int64_t lo = 0, hi = L - s;  // hi fits
        while (lo < hi) {
          const int64_t mid = (lo + hi) / 2;
          MEMTRAIN_ASSIGN_OR_RETURN(PolicyPlan p, candidate(s, mid));
          if (p.memory.fits()) {
            hi = mid;
          } else {
            lo = mid + 1;
          }
        }
        MEMTRAIN_ASSIGN_OR_RETURN(PolicyPlan p, candidate(s, hi));
        if (!found || p.slowdown < best.slowdown) best = p;
        found = true;
      }
    }
  }
  if (found) return best;
  return absl::InvalidArgumentError(absl::StrCat(
      "memory.budget: no plan fits ", format_bytes(cfg.memory.budget_bytes()), " per rank; the smallest needs ",
      format_bytes(smallest.memory.total), " (", describe(smallest), "):\n",
      plan_table(with_policies(cfg, smallest), smallest.memory)));
}

}  // namespace memtrain::trainer
