// Pipeline figures, run under mpirun with every rank a pipeline stage (or a chunk group: parallel.pp_chunks):
//   - the bubble each rank measures (the time its run_step waits for messages, over the run_step's time) and their
//     mean, next to the schedule's simulated bubble (parallel/pipeline_simulator.h, a backward costing two
//     forwards);
//   - each rank's peak activation bytes from the allocator next to `memtrain plan`'s prediction for that pp rank.
// Usage: mpirun -np P bench/pipeline CONFIG [--steps N] [--set section.key=value ...] (with parallel.pp = P).
// Tokens are random; train.threads defaults to 1 per rank.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/mesh_bench_main.h"
#include "core/memory.h"
#include "core/philox.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "parallel/pipeline_simulator.h"
#include "trainer/distributed.h"
#include "trainer/pipeline.h"
#include "trainer/plan.h"
#include "trainer/session.h"

using namespace memtrain;

static absl::Status run_bench(parallel::World& world, const trainer::Config& cfg, int steps) {
  trainer::apply_runtime(cfg, world.launch().local_size);
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::MeshRun run, trainer::create_mesh_run(world.comm(), cfg));
  parallel::Communicator& pp = run.pp();
  if (pp.size() < 2) return absl::InvalidArgumentError("bench/pipeline needs parallel.pp >= 2");
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::MemoryPlan plan, trainer::plan_memory(cfg, world.size(), pp.rank()));
  MEMTRAIN_ASSIGN_OR_RETURN(auto bundle,
                            trainer::build_model(cfg, /*allocate=*/false, run.tp(), run.cp(), pp.rank(), pp.size()));
  MEMTRAIN_ASSIGN_OR_RETURN(auto engine, trainer::create_data_parallel(cfg, run, *bundle));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Optimizer> opt,
                            trainer::create_sharded_optimizer(cfg, run, *bundle, *engine));
  MEMTRAIN_ASSIGN_OR_RETURN(auto runner,
                            trainer::PipelineRunner::create(cfg, pp, bundle->chunks(), bundle->params, *engine));
  const int64_t B = cfg.train.batch_size, T = cfg.train.resolved_seq_len(cfg.model.block_size);
  const int m = static_cast<int>(cfg.train.grad_accum);
  std::vector<Tensor> tokens, targets;
  for (int k = 0; k < m; ++k) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor a, Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor b, Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations));
    tokens.push_back(a);
    targets.push_back(b);
  }
  const float scale = 1.0f / static_cast<float>(B * T * m * run.dp().size());
  double step_s = 0, wait_s = 0;
  // Per category shown: the peak over the measured steps.
  const MemCategory shown[] = {MemCategory::kActivations, MemCategory::kParameters, MemCategory::kGradients};
  constexpr int kShown = 3;
  int64_t peak[kShown] = {};
  for (int step = -2; step < steps; ++step) {  // two warm-up steps
    for (int k = 0; k < m; ++k) {
      const PhiloxKey key = philox_key(static_cast<uint64_t>(step + 100), "bench_tokens");
      for (int64_t i = 0; i < B * T; ++i) {
        const auto r = philox4x32(key, static_cast<uint64_t>((run.dp().rank() * m + k) * B * T + i));
        tokens[k].i32()[i] = static_cast<int32_t>(r[0] % cfg.model.vocab_size);
        targets[k].i32()[i] = static_cast<int32_t>(r[1] % cfg.model.vocab_size);
      }
    }
    MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());  // every stage starts the step together
    MemoryTracker::host().reset_peaks();
    MEMTRAIN_RETURN_IF_ERROR(engine->begin_micro_batch(0));
    MEMTRAIN_RETURN_IF_ERROR(runner->run_step(tokens, targets, scale).status());
    MEMTRAIN_RETURN_IF_ERROR(engine->finish_gradients());
    MEMTRAIN_ASSIGN_OR_RETURN(double norm, trainer::mesh_grad_norm(run, *bundle, *engine));
    const double coef = optim::clip_coefficient(norm, cfg.optim.grad_clip);
    if (coef < 1) engine->scale_grads(static_cast<float>(coef));
    MEMTRAIN_RETURN_IF_ERROR(opt->step(1e-4));
    MEMTRAIN_RETURN_IF_ERROR(engine->finish_step());
    MEMTRAIN_RETURN_IF_ERROR(runner->sync_tied_values());
    if (step < 0) continue;
    step_s += runner->last_step_s();
    wait_s += runner->last_wait_s();
    const MemorySnapshot snap = MemoryTracker::host().snapshot();
    for (int c = 0; c < kShown; ++c) peak[c] = std::max(peak[c], snap.peak[static_cast<int>(shown[c])]);
  }
  // Per pp rank: bubble, then measured and predicted peak bytes of each category shown.
  constexpr int kPer = 1 + 2 * kShown;
  double mine[kPer] = {wait_s / step_s};
  for (int c = 0; c < kShown; ++c) {
    mine[1 + 2 * c] = static_cast<double>(peak[c]);
    mine[2 + 2 * c] = static_cast<double>(plan.bytes[static_cast<int>(shown[c])]);
  }
  std::vector<double> all(kPer * pp.size());
  MEMTRAIN_RETURN_IF_ERROR(pp.all_gather(mine, all.data(), sizeof(mine), DType::kU8));
  if (world.rank() != 0) return absl::OkStatus();
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::ScheduleKind kind, parallel::parse_schedule_kind(cfg.parallel.pp_schedule));
  const int v = static_cast<int>(cfg.parallel.pp_chunks);
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::PipelineSchedule sched,
                            parallel::make_pipeline_schedule({kind, pp.size(), m, v}));
  // A chunk holds 1/v of a rank's layers; backward (input and weight parts) costs about two forwards.
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::PipelineTimeline tl,
                            parallel::simulate_pipeline(sched, {1.0 / v, 1.0 / v, 1.0 / v}));
  double mean = 0;
  for (int r = 0; r < pp.size(); ++r) mean += all[kPer * r] / pp.size();
  std::printf("%s pp=%d dp=%d ZeRO-%d m=%d v=%d | step %.1f ms | bubble measured %.3f (",
              cfg.parallel.pp_schedule.c_str(), pp.size(), run.dp().size(), static_cast<int>(cfg.zero.stage), m, v,
              1e3 * step_s / steps, mean);
  for (int r = 0; r < pp.size(); ++r) std::printf("%s%.3f", r ? " " : "", all[kPer * r]);
  std::printf(") simulated %.3f\n", tl.bubble_fraction);
  for (int c = 0; c < kShown; ++c) {
    std::printf("  peak %s MiB measured/plan per stage:", std::string(mem_category_name(shown[c])).c_str());
    for (int r = 0; r < pp.size(); ++r) {
      std::printf(" %.2f/%.2f", all[kPer * r + 1 + 2 * c] / 1048576.0, all[kPer * r + 2 + 2 * c] / 1048576.0);
      if (c == 0) std::printf(" (in flight %d)", tl.peak_in_flight[r]);
    }
    std::printf("\n");
  }
  return absl::OkStatus();
}

int main(int argc, char** argv) { return memtrain::bench::mesh_bench_main(argc, argv, "pipeline", run_bench); }
