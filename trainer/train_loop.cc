#include "trainer/train_loop.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/cpu/gemm.h"
#include "core/fault_injection.h"
#include "core/file_io.h"
#include "data/tokenizer.h"
#include "model/lora.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
#include "optim/restartable.h"
#include "optim/zo_sgd.h"
#include "parallel/local_communicator.h"
#include "trainer/activation_planner.h"
#include "trainer/checkpointing.h"
#include "trainer/distributed.h"
#include "trainer/generate.h"
#include "trainer/lora_ga.h"
#include "trainer/quailora.h"
#include "trainer/metrics.h"
#include "trainer/peft_adapter.h"
#include "trainer/pipeline.h"
#include "trainer/session.h"
#include "trainer/snapshots.h"
#include "trainer/stop_signal.h"
#include "trainer/tensorboard.h"

namespace memtrain::trainer {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string output_file(const Config& cfg, const char* name) {
  return (std::filesystem::path(cfg.output.dir) / name).string();
}

}  // namespace

absl::Status print_samples(const Config& cfg, model::Model& model) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<data::Tokenizer> tok, data::load_tokenizer(cfg.data.tokenizer));
  std::vector<int32_t> prompt = tok->encode(cfg.output.prompt.empty() ? "\n" : cfg.output.prompt);
  for (int64_t i = 0; i < cfg.output.samples; ++i) {
    SampleOptions opts{cfg.output.sample_tokens, cfg.output.temperature, cfg.output.top_k,
                       static_cast<uint64_t>(cfg.train.seed), i};
    MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> out, generate(model, prompt, opts));
    std::printf("--- sample %lld ---\n%s\n", static_cast<long long>(i + 1),
                tok->decode(out).c_str());
  }
  std::fflush(stdout);
  return absl::OkStatus();
}

namespace {
// A batch's loss sum on the whole mesh (every cp rank's chunks, every pp stage), the same on every rank.
using BatchLoss = std::function<absl::StatusOr<double>(const Batch& batch)>;

absl::StatusOr<double> evaluate_batches(const BatchLoss& batch_loss, const RunData& data, int64_t batches,
                                        parallel::Communicator* dp) {
  batches = std::min(batches, data.eval_batches());
  const int d = dp != nullptr ? dp->size() : 1, r = dp != nullptr ? dp->rank() : 0;
  MEMTRAIN_ASSIGN_OR_RETURN(Batch batch, data.make_batch(data.eval_batch_size()));
  // Batch b runs on dp rank b % d. Every rank runs the same number of forwards (a rank past the end repeats
  // batch 0 and drops it), since ZeRO-3 gathers parameters collectively inside forward.
  std::vector<double> losses(batches, 0.0);
  for (int64_t round = 0; round * d < batches; ++round) {
    const int64_t b = round * d + r;
    data.fill_eval(b < batches ? b : 0, batch);
    MEMTRAIN_ASSIGN_OR_RETURN(double loss, batch_loss(batch));
    if (b < batches) losses[b] = loss;
  }
  std::vector<double> all(losses);
  if (d > 1) {
    all.resize(losses.size() * d);
    const std::vector<int64_t> counts(d, static_cast<int64_t>(losses.size() * sizeof(double)));
    MEMTRAIN_RETURN_IF_ERROR(dp->all_gather_v(losses.data(), all.data(), counts, DType::kU8));
  }
  double sum = 0;  // in batch order, as one process adds them
  int64_t normalizer = 0;
  for (int64_t b = 0; b < batches; ++b) {
    sum += all[(b % d) * batches + b];
    normalizer += data.eval_normalizer(b);
  }
  return sum / static_cast<double>(normalizer);
}
}  // namespace

absl::StatusOr<double> evaluate_loss(model::Model& model, const RunData& data, int64_t batches,
                                     parallel::Communicator* dp) {
  auto batch_loss = [&](const Batch& batch) -> absl::StatusOr<double> {
    model::ActivationStore discard(/*keep=*/false);
    batch.apply(discard);
    MEMTRAIN_ASSIGN_OR_RETURN(double loss, model.forward(batch.inputs, batch.targets, 0.0f, discard));
    MEMTRAIN_RETURN_IF_ERROR(model.context_parallel().sum(loss));  // each cp rank ran its chunks
    return loss;
  };
  return evaluate_batches(batch_loss, data, batches, dp);
}

absl::StatusOr<TrainResult> run_training(const Config& cfg, bool quiet) {
  parallel::LocalCommunicator world("world");
  return run_training(cfg, world, 1, quiet);
}

absl::StatusOr<TrainResult> run_training(const Config& cfg, parallel::Communicator& world, int local_ranks,
                                         bool quiet) {
  apply_runtime(cfg, local_ranks);
  if (wants_auto_policies(cfg)) {
    // Rank 0's probe decides for everyone, so every rank builds the same plan.
    MEMTRAIN_ASSIGN_OR_RETURN(Bandwidths bw, probe_bandwidths(cfg));
    float rates[3] = {static_cast<float>(bw.flops), static_cast<float>(bw.ssd_write), static_cast<float>(bw.ssd_read)};
    MEMTRAIN_RETURN_IF_ERROR(world.broadcast(rates, 3, DType::kF32, 0));
    bw = {rates[0], rates[1], rates[2]};
    MEMTRAIN_ASSIGN_OR_RETURN(PolicyPlan plan, plan_policies(cfg, world.size(), bw));
    if (!quiet && world.rank() == 0) {
      std::printf("memory.activations = auto: %s; predicted peak %s of memory.budget %s\n", describe(plan).c_str(),
                  format_bytes(plan.memory.total).c_str(), format_bytes(plan.memory.budget).c_str());
    }
    return run_training(with_policies(cfg, plan), world, local_ranks, quiet);
  }
  const bool lead = world.rank() == 0;  // writes output.dir and prints
  quiet = quiet || !lead;
  const int64_t B = cfg.train.batch_size, T = cfg.train.resolved_seq_len(cfg.model.block_size);
  const int64_t accum = cfg.train.grad_accum, max_steps = cfg.train.max_steps;
  // Mesh and model errors come before anything is allocated or written.
  MEMTRAIN_ASSIGN_OR_RETURN(MeshRun run, create_mesh_run(world, cfg));
  const int64_t d = run.dp().size(), dp_rank = run.dp().rank();

  // The global batch of a step is B * accum * d rows; dp rank r's micro-batch m holds rows
  // [(r * accum + m) * B, ... + B), so one process with accum * d micro-batches sees the same rows in the same order.
  // The data is checked before output.dir is created, so a rejected run leaves no trace. Rank 0 prepares text
  // data and creates output.dir; the others open the shards once it succeeded.
  absl::StatusOr<std::unique_ptr<RunData>> data = absl::UnknownError("unset");
  absl::Status ready;
  if (lead) {
    data = RunData::open(cfg, B * accum * d);
    ready = data.status();
    if (ready.ok()) {
      std::error_code ec;
      std::filesystem::create_directories(cfg.output.dir, ec);
      if (ec) {
        ready = absl::InvalidArgumentError(
            absl::StrCat("output.dir: cannot create ", cfg.output.dir, ": ", ec.message()));
      }
    }
    if (ready.ok()) {
      ready = write_file_atomically(output_file(cfg, "config.toml"), {dump_config(cfg)});
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(agree(world, ready));
  if (!lead) data = RunData::open(cfg, B * accum * d, /*prepare=*/false);
  MEMTRAIN_RETURN_IF_ERROR(data.status());
  const RunData& batches = **data;

  const model::TensorParallel tp = run.tp();
  const model::ContextParallel cp = run.cp();
  const int pp = run.pp().size();
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ModelBundle> bundle,
                            build_model(cfg, /*allocate=*/false, tp, cp, run.pp().rank(), pp));
  model::Model& model = *bundle->model;
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DataParallel> engine, create_data_parallel(cfg, run, *bundle));
  std::unique_ptr<PipelineRunner> pipeline;  // between the model and the engine when pp > 1
  if (pp > 1) {
    MEMTRAIN_ASSIGN_OR_RETURN(pipeline,
                              PipelineRunner::create(cfg, run.pp(), bundle->chunks(), bundle->params, *engine));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Optimizer> opt, create_sharded_optimizer(cfg, run, *bundle, *engine));
  auto* zo = dynamic_cast<optim::ZoSgd*>(opt.get());  // zeroth-order: forwards only
  const CheckpointScope checkpoints{cfg, world, run, *bundle, *engine, *opt, quiet};
  MEMTRAIN_ASSIGN_OR_RETURN(int64_t first_step, resume_from_checkpoint(checkpoints));
  // In-memory snapshots: a restart continues from the newest complete one when it is newer than the checkpoint.
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<SnapshotStore> snapshots, SnapshotStore::create(checkpoints));
  if (snapshots && cfg.train.resume == "auto") {
    MEMTRAIN_ASSIGN_OR_RETURN(first_step, snapshots->recover(first_step));
  }
  if (cfg.lora.lora_ga() && first_step == 0) {  // a resumed run has its adapters and base from the checkpoint
    const auto t_init = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(lora_ga_initialize(cfg, world, run, *bundle, *engine, batches));
    if (!quiet) {
      std::printf("LoRA-GA: adapters initialised from the gradient of %lld batches in %.2f s\n",
                  static_cast<long long>(cfg.lora.ga_batches), seconds_since(t_init));
    }
  }
  if (cfg.lora.quailora() && first_step == 0) {
    const auto t_init = Clock::now();
    MEMTRAIN_ASSIGN_OR_RETURN(const QuantizationError err,
                              quailora_initialize(cfg, world, run, *bundle, *engine, batches));
    if (!quiet) {
      std::printf("QuAILoRA: adapters cancel %.1f%% of the NF4 base's quantization error on the inputs of %lld "
                  "batches (%.2f s)\n", 100.0 * (1.0 - err.quailora / std::max(err.qlora, 1e-300)),
                  static_cast<long long>(cfg.lora.calib_batches), seconds_since(t_init));
    }
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointSaver> saver, CheckpointSaver::create(checkpoints));
  // A failed save stops the run, or (train.checkpoint_failure = "continue") is a warning.
  auto checkpoint_outcome = [&](const absl::Status& saved) {
    if (saved.ok() || cfg.train.checkpoint_failure == "stop") return saved;
    if (lead) {
      std::fprintf(stderr, "warning: checkpoint failed (training goes on, train.checkpoint_failure = \"continue\"): %s\n",
                   std::string(saved.message()).c_str());
    }
    return absl::OkStatus();
  };
  std::optional<MetricsLog> metrics;
  if (lead) {  // a resumed run continues the log
    MEMTRAIN_ASSIGN_OR_RETURN(MetricsLog log, MetricsLog::open(output_file(cfg, "metrics.jsonl"), first_step));
    metrics.emplace(std::move(log));
  }
  std::optional<TensorBoardLog> tensorboard;
  if (lead && cfg.output.tensorboard) {
    MEMTRAIN_ASSIGN_OR_RETURN(TensorBoardLog log, TensorBoardLog::open(output_file(cfg, "tensorboard")));
    tensorboard.emplace(std::move(log));
  }
  // A pipeline has every micro-batch of a step in flight at once; otherwise they run one after the other.
  std::vector<Batch> micro_batches;
  std::vector<Tensor> inputs, targets;  // the pipeline's view of them
  for (int64_t k = 0; k < (pp > 1 ? accum : 1); ++k) {
    MEMTRAIN_ASSIGN_OR_RETURN(Batch b, batches.make_batch(B));
    inputs.push_back(b.inputs);
    targets.push_back(b.targets);
    micro_batches.push_back(std::move(b));
  }
  const double peak_gflops = cpu::measure_sgemm_gflops(ThreadPool::global());
  // Per rank: tensor parallelism splits every matmul (the small unsplit parts are ignored), context parallelism the
  // tokens (and, balanced, the attention pairs); a pipeline stage counts its own layers.
  double flops_per_token = 0;
  for (const model::Model* chunk : bundle->chunks()) flops_per_token += chunk->flops_per_token(T);
  // zo_sgd runs two forwards, each a third of a training step's FLOPs.
  const double flops_per_step = flops_per_token * static_cast<double>(B * T * accum) / (tp.size * cp.group_size()) *
                                (zo != nullptr ? 2.0 / 3.0 : 1.0);
  if (!quiet) {
    model::ParamSet whole;  // shapes only: the count of the whole model, whichever stages this rank holds
    MEMTRAIN_RETURN_IF_ERROR(model::Model::create(cfg.model, whole).status());
    std::string trained;  // a fine-tune's adapters
    if (cfg.lora.enabled()) {
      model::ParamSet adapters;
      MEMTRAIN_RETURN_IF_ERROR(create_rank_models(cfg, adapters, {}, {}, 0, 1).status());
      trained = absl::StrCat(" (", adapters.numel(), " trained in LoRA adapters", cfg.lora.nf4() ? ", NF4 base" : "",
                             ")");
    }
    std::printf("memtrain: %s, %lld parameters%s, %lld train / %lld val tokens, dp=%lld tp=%d cp=%d pp=%d ZeRO-%lld, "
                "%d threads, sgemm peak %.0f GFLOP/s (OpenBLAS %s)\n",
                cfg.model.arch.c_str(), static_cast<long long>(whole.numel()), trained.c_str(),
                static_cast<long long>(batches.train_tokens()), static_cast<long long>(batches.val_tokens()),
                static_cast<long long>(d), tp.size, cp.group_size(), pp, static_cast<long long>(cfg.zero.stage), ThreadPool::global().size(),
                peak_gflops, cpu::blas_core_name());
  }
  // A batch's loss sum, forward only, keeping nothing: evaluations and zo_sgd's perturbed forwards.
  auto forward_loss = [&](const Batch& batch) -> absl::StatusOr<double> {
    double loss = 0;
    if (pipeline) {
      MEMTRAIN_ASSIGN_OR_RETURN(loss, pipeline->forward_only(batch.inputs, batch.targets));
      MEMTRAIN_ASSIGN_OR_RETURN(loss, pipeline->sum(loss));  // the last stage's
    } else {
      model::ActivationStore discard(/*keep=*/false);
      batch.apply(discard);
      MEMTRAIN_ASSIGN_OR_RETURN(loss, model.forward(batch.inputs, batch.targets, 0.0f, discard));
    }
    MEMTRAIN_RETURN_IF_ERROR(model.context_parallel().sum(loss));  // each cp rank ran its chunks
    return loss;
  };
  auto run_eval = [&](int64_t step) -> absl::StatusOr<double> {
    MEMTRAIN_ASSIGN_OR_RETURN(double val, evaluate_batches(forward_loss, batches, cfg.train.eval_batches, &run.dp()));
    engine->release_idle();
    if (metrics) MEMTRAIN_RETURN_IF_ERROR(metrics->log_eval(step, val));
    if (tensorboard) MEMTRAIN_RETURN_IF_ERROR(tensorboard->log_eval(step, val));
    if (!quiet) std::printf("step %6lld | val_loss %.4f\n", static_cast<long long>(step), val);
    return val;
  };

  TrainResult result;
  const auto t_start = Clock::now();
  // The steps since the last metrics line: their time (with checkpoint and snapshot stalls, without evaluations),
  // the part of it in data loading and those stalls, and what the communicators did meanwhile.
  double window_s = 0, window_io_s = 0, window_wait_s = 0;
  int64_t window_steps = 0, window_bytes = 0;
  auto count_comm = [&](const CommTotals& before, bool waits) {
    const CommTotals now = comm_totals(world, run);
    window_bytes += now.bytes - before.bytes;
    if (waits) window_wait_s += now.wait_s - before.wait_s;
  };
  for (int64_t step = first_step; step < max_steps; ++step) {
    const auto t0 = Clock::now();
    const CommTotals comm0 = comm_totals(world, run);
    // An offloaded shard brought in (initial values, a resume, a checkpoint) goes out before the step's peaks.
    MEMTRAIN_RETURN_IF_ERROR(engine->send_values_out());
    MemoryTracker::host().reset_peaks();
    const double lr = optim::learning_rate(cfg.optim, step, max_steps);
    // The loss is the mean over the step's positions (token windows) or trained targets (instructions).
    const float grad_scale = 1.0f / static_cast<float>(batches.train_normalizer(step));
    double loss_sum = 0, norm = 0;
    if (zo != nullptr) {
      // MeZO: the step's direction z added to the values (scale eps), then -2 eps, then eps back; each time every
      // micro-batch of the global batch runs forward. l+ and l- are global loss sums.
      auto perturbed_loss = [&](double scale) -> absl::StatusOr<double> {
        zo->perturb(scale);
        double sum = 0;
        for (int64_t micro = 0; micro < accum; ++micro) {
          const int64_t row = (dp_rank * accum + micro) * B;
          const auto t_data = Clock::now();
          batches.fill_train(step, row, row + B, micro_batches[0]);
          window_io_s += seconds_since(t_data);
          MEMTRAIN_ASSIGN_OR_RETURN(const double loss, forward_loss(micro_batches[0]));
          sum += loss;
        }
        engine->release_idle();  // stage 3: a unit prefetched past the last
        return engine->sum_over_ranks(sum);
      };
      const double eps = cfg.optim.zo_eps;
      MEMTRAIN_ASSIGN_OR_RETURN(const double plus, perturbed_loss(eps));
      MEMTRAIN_ASSIGN_OR_RETURN(const double minus, perturbed_loss(-2 * eps));
      zo->perturb(eps);
      const double projected = (plus - minus) * grad_scale / (2 * eps);
      zo->set_projected_gradient(projected);
      MEMTRAIN_RETURN_IF_ERROR(opt->step(lr));
      MEMTRAIN_RETURN_IF_ERROR(engine->finish_step());
      norm = std::abs(projected);  // logged as grad_norm: the directional derivative's size
      loss_sum = (plus + minus) / 2;  // L(theta) to second order
    }
    for (int64_t micro = 0; micro < accum && zo == nullptr; ++micro) {
      const size_t k = pipeline ? micro : 0;
      const int64_t row = (dp_rank * accum + micro) * B;
      const auto t_data = Clock::now();
      batches.fill_train(step, row, row + B, micro_batches[k]);
      window_io_s += seconds_since(t_data);
      if (pipeline) continue;  // all micro-batches go in at once, below
      MEMTRAIN_RETURN_IF_ERROR(engine->begin_micro_batch(micro));
      model::ActivationStore store;
      micro_batches[0].apply(store);
      // LoRA dropout's masks: this micro-batch's index in the run, counted over every rank's.
      store.set_dropout(static_cast<uint64_t>(cfg.train.seed), (step * d + dp_rank) * accum + micro);
      MEMTRAIN_ASSIGN_OR_RETURN(double loss, model.forward(inputs[0], targets[0], grad_scale, store));
      MEMTRAIN_RETURN_IF_ERROR(model.backward(store));
      MEMTRAIN_CHECK_MSG(store.empty(), "activations left after backward");
      loss_sum += loss;
    }
    if (pipeline) {
      MEMTRAIN_RETURN_IF_ERROR(engine->begin_micro_batch(0));
      MEMTRAIN_ASSIGN_OR_RETURN(loss_sum, pipeline->run_step(inputs, targets, grad_scale));
    }
    if (zo == nullptr) {
      MEMTRAIN_RETURN_IF_ERROR(engine->finish_gradients());
      MEMTRAIN_RETURN_IF_ERROR(opt->prepare_step());  // LISA: what does not train has no gradient
      MEMTRAIN_ASSIGN_OR_RETURN(norm, mesh_grad_norm(run, *bundle, *engine));
      const double coef = optim::clip_coefficient(norm, cfg.optim.grad_clip);
      if (coef < 1.0) engine->scale_grads(static_cast<float>(coef));
      MEMTRAIN_RETURN_IF_ERROR(opt->step(lr));
      MEMTRAIN_RETURN_IF_ERROR(engine->finish_step());
    }
    if (pipeline) MEMTRAIN_RETURN_IF_ERROR(pipeline->sync_tied_values());
    if (cfg.lora.periodic() && (step + 1) % cfg.lora.periodic_interval == 0) {
      // PeriodicLoRA's stage ends: the adapters go into the base (every rank holds them whole now) and start again,
      // with new optimizer state. The next stage's A comes from its own seed, the same on every rank.
      const int64_t stage = (step + 1) / cfg.lora.periodic_interval;
      const uint64_t seed = model::adapter_stage_seed(static_cast<uint64_t>(cfg.train.seed), stage);
      MEMTRAIN_RETURN_IF_ERROR(model::restart_adapters(bundle->params, seed));
      MEMTRAIN_RETURN_IF_ERROR(static_cast<optim::Restartable&>(*opt).restart());
    }
    MEMTRAIN_FAULT_POINT("train.step");
    double total = loss_sum;  // zo_sgd's is global already
    if (zo == nullptr) {
      MEMTRAIN_ASSIGN_OR_RETURN(total, engine->sum_over_ranks(loss_sum));
    }
    if (pipeline) {
      MEMTRAIN_ASSIGN_OR_RETURN(total, pipeline->sum(total));  // the last stage's
    }
    const double loss = total * grad_scale;
    result.losses.push_back(loss);
    window_s += seconds_since(t0);
    ++window_steps;
    count_comm(comm0, /*waits=*/true);

    const bool last = step + 1 == max_steps;
    if ((step + 1) % cfg.train.log_interval == 0 || last) {
      StepMetrics m;
      m.step = step + 1;
      m.max_steps = max_steps;
      m.loss = loss;
      m.lr = lr;
      m.grad_norm = norm;
      const double mean_s = window_s / static_cast<double>(window_steps);
      m.step_ms = 1000 * mean_s;
      m.tokens_per_s = static_cast<double>(B * T * accum * d) / mean_s;
      m.mfu = flops_per_step / mean_s * 1e-9 / peak_gflops;
      m.eta_s = mean_s * static_cast<double>(max_steps - step - 1);
      m.mem = MemoryTracker::host().snapshot();
      if (snapshots) m.snapshot_bytes = snapshots->bytes_sent();
      const double per_step_ms = 1000.0 / static_cast<double>(window_steps);
      m.comm_bytes = window_bytes / window_steps;
      m.comm_ms = window_wait_s * per_step_ms;
      m.io_ms = window_io_s * per_step_ms;
      m.compute_ms = std::max(0.0, m.step_ms - m.comm_ms - m.io_ms);
      if (metrics) MEMTRAIN_RETURN_IF_ERROR(metrics->log_step(m));
      if (tensorboard) MEMTRAIN_RETURN_IF_ERROR(tensorboard->log_step(m));
      if (!quiet) std::printf("%s\n", progress_line(m).c_str());
      std::fflush(stdout);
      window_s = window_io_s = window_wait_s = 0;
      window_steps = window_bytes = 0;
    }
    if (!last && cfg.train.eval_interval > 0 && (step + 1) % cfg.train.eval_interval == 0) {
      MEMTRAIN_RETURN_IF_ERROR(run_eval(step + 1).status());
    }
    // Last in the step, so that a run resumed from it has logged (and evaluated) everything up to it. Their stalls
    // count in the next metrics line.
    const auto t_save = Clock::now();
    const CommTotals comm_save = comm_totals(world, run);
    const int64_t every = cfg.train.checkpoint_interval;
    if (every > 0 && ((step + 1) % every == 0 || last)) {
      MEMTRAIN_RETURN_IF_ERROR(checkpoint_outcome(saver->save(step + 1)));
    }
    if (snapshots && (step + 1) % cfg.snapshot.interval == 0) MEMTRAIN_RETURN_IF_ERROR(snapshots->take(step + 1));
    const double stall_s = seconds_since(t_save);
    window_s += stall_s;
    window_io_s += stall_s;
    count_comm(comm_save, /*waits=*/false);
    // A stop signal on any rank (a preemption, a time limit coming): every rank stops here, the step checkpointed.
    MEMTRAIN_ASSIGN_OR_RETURN(const int signo, agreed_stop_signal(world));
    if (signo != 0 && !last) {
      if (every <= 0 || (step + 1) % every != 0) MEMTRAIN_RETURN_IF_ERROR(saver->save(step + 1));
      MEMTRAIN_RETURN_IF_ERROR(saver->wait());  // strict, whatever train.checkpoint_failure says: it is all we keep
      if (snapshots) MEMTRAIN_RETURN_IF_ERROR(snapshots->finish());  // the checkpoint holds the same step
      if (!quiet) {
        std::printf("stopped by SIG%s after step %lld, checkpoint saved; a run with train.resume = \"auto\" continues "
                    "from it\n", sigabbrev_np(signo), static_cast<long long>(step + 1));
      }
      result.stop_signal = signo;
      return result;
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(checkpoint_outcome(saver->wait()));  // the last save, when in the background
  if (snapshots) MEMTRAIN_RETURN_IF_ERROR(snapshots->finish());  // the run is complete: nothing to recover from
  MEMTRAIN_ASSIGN_OR_RETURN(result.final_val_loss, run_eval(max_steps));
  if (!quiet) std::printf("trained %lld steps in %.1f s\n", static_cast<long long>(max_steps), seconds_since(t_start));
  // Every rank holds its tp part of the model from here (ZeRO-3 gathers it); the ranks of rank 0's tp group assemble
  // the global tensors, and rank 0 saves and samples a single-process model without the engine.
  // Nothing to save or sample: the whole model is never assembled (under a tight memory.budget it may not fit).
  if (!cfg.output.save_weights && (quiet || cfg.output.samples == 0)) return result;
  MEMTRAIN_RETURN_IF_ERROR(engine->materialize_values());
  for (model::Model* chunk : bundle->chunks()) chunk->set_unit_hooks(nullptr);
  if (run.mesh.coord().dp != 0 || run.mesh.coord().cp != 0) return result;
  std::unique_ptr<ModelBundle> global;
  if (tp.size > 1 || cp.group_size() > 1) {  // a model without tp and cp, to save and to sample from
    MEMTRAIN_ASSIGN_OR_RETURN(global, gather_tensor_parallel(cfg, run, *bundle));
  }
  if (pp > 1) {  // and the stages' parts assembled on pp rank 0 (tp rank 0 of each stage sends)
    if (run.mesh.coord().tp != 0) return result;
    MEMTRAIN_ASSIGN_OR_RETURN(global, gather_pipeline(cfg, run, global ? *global : *bundle));
  }
  if (!lead) return result;
  const ModelBundle& whole = global ? *global : *bundle;
  if (cfg.output.save_weights) {
    // PeriodicLoRA and LoRA-GA change the base: its product is the merged model, not an adapter.
    const bool adapter = cfg.lora.enabled() && !cfg.lora.changes_base();
    const std::string path = adapter ? adapter_path(cfg) : weights_path(cfg);
    MEMTRAIN_FAULT_POINT("train.before_save_weights");
    if (adapter) {
      MEMTRAIN_RETURN_IF_ERROR(write_peft_adapter(path, whole.params, cfg.model));
    } else if (cfg.lora.enabled()) {
      MEMTRAIN_RETURN_IF_ERROR(save_merged_weights(whole, path));
    } else {
      MEMTRAIN_RETURN_IF_ERROR(save_weights(whole, path));
    }
    if (!quiet) {
      std::printf("saved %s to %s\n", adapter ? "the adapter" : cfg.lora.enabled() ? "the merged weights" : "weights",
                  path.c_str());
    }
  }
  if (!quiet) MEMTRAIN_RETURN_IF_ERROR(print_samples(cfg, *whole.model));
  return result;
}

}  // namespace memtrain::trainer
