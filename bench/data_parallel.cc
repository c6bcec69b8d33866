// Data-, tensor- and context-parallel figures, run under mpirun (one line per run from rank 0):
//   - bytes each rank sends per step over the data-parallel group (dp x cp) against the ring theory: 2(d-1)/d * 4 psi
//     for DDP and ZeRO-1/2 (reduce + gather), 3(d-1)/d * 4 psi for ZeRO-3 (forward gather, backward gather,
//     gradient reduce-scatter), psi = the parameters this rank holds (a tp rank's part);
//   - bytes sent over tp against Megatron's count (tp_theory_bytes below), and over cp against the ring's
//     (cp_theory_bytes);
//   - peak bytes per category on rank 0 during the steps, next to `memtrain plan`'s prediction;
//   - step time, the time backward's reductions still needed after backward ended (exposed), and the same
//     reductions run alone with no backward (every unit ready at once): hidden = 1 - exposed / alone.
// Usage: mpirun -np D bench/data_parallel CONFIG [--steps N] [--set section.key=value ...]
// Tokens are random (the data does not matter for these figures); train.threads defaults to 1 per rank.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/mesh_bench_main.h"
#include "core/memory.h"
#include "core/philox.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "parallel/world.h"
#include "trainer/config.h"
#include "trainer/distributed.h"
#include "trainer/plan.h"
#include "trainer/session.h"

using namespace memtrain;
using Clock = std::chrono::steady_clock;

// Bytes one rank sends over tp in one micro-batch's forward + backward (Megatron's count; ring costs: an all-reduce
// of n elements 2n(p-1)/p, a reduce-scatter or all-gather n(p-1)/p). All-reduced: the embedding output, two
// row-parallel outputs per block in forward and two column-parallel input gradients in backward, dL/dh (N x C
// each), the head's row maxima, sums of exponentials and target logits (3N); with fewer kv heads than tp ranks each
// block's key and value gradients (N x Hkv*D each). With SP every N x C all-reduce is a reduce-scatter plus an
// all-gather, backward gathers each block's two inputs again, and the norms' weights (and biases) and GPT-2's
// position table sum their gradients.
static double tp_theory_bytes(const trainer::Config& cfg, int64_t N, int p) {
  const model::ModelConfig& m = cfg.model;
  const int64_t C = m.n_embd, L = m.n_layer;
  if (p == 1) return 0;
  int64_t all_reduced = 3 * N, halves = 0;
  if (m.is_llama() && m.kv_heads() < p) all_reduced += L * 2 * N * m.kv_heads() * m.head_dim();
  if (!cfg.parallel.sequence_parallel) {
    all_reduced += N * C * (2 + 4 * L);
  } else {
    halves = N * C * (2 * (2 + 4 * L) + 2 * L);
    all_reduced += (2 * L + 1) * (m.is_llama() ? C : 2 * C) + (m.is_llama() ? 0 : m.block_size * C);
  }
  return 4.0 * static_cast<double>(2 * all_reduced + halves) * (p - 1) / p;
}
// Bytes one rank sends over cp in one micro-batch's forward + backward: per layer, ring attention passes its
// key/value block on cp - 1 times in forward and again in backward, plus the block's gradient cp times (the last hop
// brings it home). A block is this rank's keys and values: 2 * (B * T / cp) tokens x (local kv heads x head dim).
static double cp_theory_bytes(const trainer::Config& cfg, int64_t B, int64_t T, int p, int tp) {
  const model::ModelConfig& m = cfg.model;
  const int64_t kv_heads = m.is_llama() ? (m.kv_heads() >= tp ? m.kv_heads() / tp : 1) : m.n_head / tp;
  const double block = 4.0 * 2 * (B * T / p) * kv_heads * m.head_dim();
  return static_cast<double>(m.n_layer) * (3 * p - 2) * block;
}

static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

static absl::Status run_bench(parallel::World& world, const trainer::Config& cfg, int steps) {
  trainer::apply_runtime(cfg, world.launch().local_size);
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::MeshRun run, trainer::create_mesh_run(world.comm(), cfg));
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::MemoryPlan plan, trainer::plan_memory(cfg, world.size()));
  MEMTRAIN_ASSIGN_OR_RETURN(auto bundle, trainer::build_model(cfg, /*allocate=*/false, run.tp(), run.cp()));
  MEMTRAIN_ASSIGN_OR_RETURN(auto engine, trainer::create_data_parallel(cfg, run, *bundle));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Optimizer> opt,
                            trainer::create_sharded_optimizer(cfg, run, *bundle, *engine));

  const int64_t B = cfg.train.batch_size, T = cfg.train.resolved_seq_len(cfg.model.block_size);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor inputs, Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor targets_t, Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations));
  parallel::Communicator& dp = run.data_parallel();  // the engine's group: dp x cp
  parallel::Communicator& data = run.dp();            // ranks that read different tokens
  parallel::Communicator& tp = run.mesh.comm(parallel::Axis::kTp);
  parallel::Communicator& cp = run.mesh.comm(parallel::Axis::kCp);
  auto group_bytes = [&] { return run.hpz ? run.hpz->bytes_sent() : 0; };
  const float scale = 1.0f / static_cast<float>(B * T * cfg.train.grad_accum * data.size());
  double step_s = 0, exposed_s = 0;
  int64_t bytes = 0, bytes_group = 0, bytes_tp = 0, bytes_cp = 0;
  MemorySnapshot peaks;
  for (int step = -2; step < steps; ++step) {  // two warm-up steps
    const PhiloxKey key = philox_key(static_cast<uint64_t>(step + 100), "bench_tokens");
    for (int64_t i = 0; i < B * T; ++i) {
      const auto r = philox4x32(key, static_cast<uint64_t>(data.rank() * B * T + i));
      inputs.i32()[i] = static_cast<int32_t>(r[0] % 256);
      targets_t.i32()[i] = static_cast<int32_t>(r[1] % 256);
    }
    MemoryTracker::host().reset_peaks();
    const int64_t b0 = dp.bytes_sent(), g0 = group_bytes(), t0_bytes = tp.bytes_sent(), c0_bytes = cp.bytes_sent();
    const auto t0 = Clock::now();
    for (int64_t m = 0; m < cfg.train.grad_accum; ++m) {
      MEMTRAIN_RETURN_IF_ERROR(engine->begin_micro_batch(m));
      model::ActivationStore store;
      MEMTRAIN_RETURN_IF_ERROR(bundle->model->forward(inputs, targets_t, scale, store).status());
      MEMTRAIN_RETURN_IF_ERROR(bundle->model->backward(store));
    }
    const auto t_wait = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(engine->finish_gradients());
    const double exposed = since(t_wait);
    MEMTRAIN_ASSIGN_OR_RETURN(double norm, trainer::mesh_grad_norm(run, *bundle, *engine));
    const double coef = optim::clip_coefficient(norm, cfg.optim.grad_clip);
    if (coef < 1) engine->scale_grads(static_cast<float>(coef));
    MEMTRAIN_RETURN_IF_ERROR(opt->step(1e-4));
    MEMTRAIN_RETURN_IF_ERROR(engine->finish_step());
    const double s = since(t0);
    if (step < 0) continue;
    step_s += s;
    exposed_s += exposed;
    bytes += dp.bytes_sent() - b0;
    bytes_group += group_bytes() - g0;
    bytes_tp += tp.bytes_sent() - t0_bytes;
    bytes_cp += cp.bytes_sent() - c0_bytes;
    const MemorySnapshot snap = MemoryTracker::host().snapshot();
    for (int c = 0; c < kNumMemCategories; ++c) peaks.peak[c] = std::max(peaks.peak[c], snap.peak[c]);
  }
  // The same reductions alone: every unit's gradient declared ready at once, with no backward to hide behind.
  std::vector<double> alone;
  for (int i = 0; i < 3; ++i) {
    MEMTRAIN_RETURN_IF_ERROR(dp.barrier());
    const auto t0 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(engine->begin_micro_batch(0));
    for (int u = bundle->model->num_units() - 1; u >= 0; --u) {
      MEMTRAIN_RETURN_IF_ERROR(engine->acquire(u, parallel::UnitUse::kGrads));
      MEMTRAIN_RETURN_IF_ERROR(engine->release(u, parallel::UnitUse::kGrads));
      MEMTRAIN_RETURN_IF_ERROR(engine->grads_ready(u));
    }
    MEMTRAIN_RETURN_IF_ERROR(engine->finish_gradients());
    alone.push_back(since(t0));
  }
  std::sort(alone.begin(), alone.end());
  const int64_t psi = bundle->params.local_numel();
  if (world.rank() != 0) return absl::OkStatus();
  const int d = dp.size();
  const double passes = cfg.zero.stage == 3 ? 3.0 : 2.0;
  const double theory = passes * (d - 1) / d * 4.0 * static_cast<double>(psi);
  const double per_step = static_cast<double>(bytes + bytes_group) / steps;
  // With cp > 1 the group is dp x cp ("dp=2x2": dp 2 times cp 2).
  const std::string group = cp.size() > 1 ? absl::StrCat(data.size(), "x", cp.size()) : absl::StrCat(d);
  std::printf("dp=%s zero=%lld%s%s psi=%lld | bytes/step %.0f (dp %.0f, hpz group %.0f) theory %.0f ratio %.4f | "
              "step %.1f ms exposed %.1f ms reduce-alone %.1f ms hidden %.0f%%\n",
              group.c_str(), static_cast<long long>(cfg.zero.stage), cfg.zero.hpz_partition_size > 1 ? " hpz" : "",
              cfg.zero.quantized_weights ? " qwz" : "", static_cast<long long>(psi), per_step,
              static_cast<double>(bytes) / steps, static_cast<double>(bytes_group) / steps, theory,
              theory > 0 ? per_step / theory : 1.0, 1e3 * step_s / steps,
              1e3 * exposed_s / steps, 1e3 * alone[1], d > 1 ? 100.0 * (1 - exposed_s / steps / alone[1]) : 0.0);
  if (tp.size() > 1) {
    const int p = tp.size();
    // A cp rank runs B * T / cp of the tokens.
    const double tp_theory = tp_theory_bytes(cfg, B * T / cp.size(), p) * static_cast<double>(cfg.train.grad_accum);
    std::printf("  tp=%d%s bytes/step %.0f theory %.0f ratio %.4f\n", p, cfg.parallel.sequence_parallel ? " sp" : "",
                static_cast<double>(bytes_tp) / steps, tp_theory,
                static_cast<double>(bytes_tp) / steps / tp_theory);
  }
  if (cp.size() > 1) {
    const double cp_theory =
        cp_theory_bytes(cfg, B, T, cp.size(), tp.size()) * static_cast<double>(cfg.train.grad_accum);
    std::printf("  cp=%d bytes/step %.0f theory %.0f ratio %.4f\n", cp.size(), static_cast<double>(bytes_cp) / steps,
                cp_theory, static_cast<double>(bytes_cp) / steps / cp_theory);
  }
  std::printf("  peak MiB measured/plan:");
  for (int c = 0; c < kNumMemCategories; ++c) {
    if (peaks.peak[c] == 0 && plan.bytes[c] == 0) continue;
    std::printf(" %s %.2f/%.2f", std::string(mem_category_name(static_cast<MemCategory>(c))).c_str(),
                peaks.peak[c] / 1048576.0, plan.bytes[c] / 1048576.0);
  }
  std::printf("\n");
  return absl::OkStatus();
}

int main(int argc, char** argv) { return memtrain::bench::mesh_bench_main(argc, argv, "data_parallel", run_bench); }
