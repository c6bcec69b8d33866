#include "trainer/pipeline.h"

#include <chrono>
#include <list>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/fault_injection.h"
#include "core/status.h"

namespace memtrain::trainer {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Point-to-point tags: one per (micro-batch, receiving stage, kind), so no two messages between a pair of ranks can
// be confused; wrapped at 32768, the smallest tag bound MPI allows (messages that far apart are never in flight
// together, and MPI keeps equal tags from one sender in order).
enum Kind { kActivation = 0, kGrad = 1, kTiedGrad = 2, kTiedValues = 3 };
int tag(int micro_batch, int stage, int stages, Kind kind) {
  return ((micro_batch * stages + stage) * 4 + kind) % 32768;
}

}  // namespace

// Sends in flight and the tensors they read, released as they complete.
class Outbox {
 public:
  explicit Outbox(parallel::Communicator& comm) : comm_(comm) {}
  void send(const Tensor& t, int peer, int t_tag) {
    sends_.push_back({comm_.send_async(t.f32(), t.numel(), DType::kF32, peer, t_tag), t});
  }
  absl::Status poll() {  // drops the finished ones; an error surfaces here or in drain
    for (auto it = sends_.begin(); it != sends_.end();) {
      if (!it->handle.test()) {
        ++it;
        continue;
      }
      MEMTRAIN_RETURN_IF_ERROR(it->handle.wait());
      it = sends_.erase(it);
    }
    return absl::OkStatus();
  }
  absl::Status drain() {
    for (auto& s : sends_) MEMTRAIN_RETURN_IF_ERROR(s.handle.wait());
    sends_.clear();
    return absl::OkStatus();
  }

 private:
  struct Send {
    parallel::CommHandle handle;
    Tensor keep;
  };
  parallel::Communicator& comm_;
  std::list<Send> sends_;
};

model::PipelineStage pipeline_stage(const Config& cfg, int stage, int stages) {
  const std::vector<int64_t>& layers = cfg.parallel.pp_layers;
  if (layers.empty()) {
    const int64_t per = cfg.model.n_layer / stages;
    return {stage * per, (stage + 1) * per, stage == 0, stage == stages - 1};
  }
  MEMTRAIN_CHECK(static_cast<int>(layers.size()) == stages);
  const int64_t first = std::accumulate(layers.begin(), layers.begin() + stage, int64_t{0});
  return {first, first + layers[stage], stage == 0, stage == stages - 1};
}

absl::StatusOr<std::vector<std::unique_ptr<model::Model>>> create_rank_models(const Config& cfg,
                                                                              model::ParamSet& params,
                                                                              const model::TensorParallel& tp,
                                                                              const model::ContextParallel& cp,
                                                                              int rank, int pp) {
  if (cfg.lora.enabled() && params.lora() == nullptr) {  // adapters in `params`, the base frozen beside them
    model::LoraSpec spec = cfg.lora;
    spec.resolve(cfg.model.arch);
    params.fine_tune(std::move(spec));
  }
  const int v = pp > 1 ? static_cast<int>(cfg.parallel.pp_chunks) : 1;
  std::vector<std::unique_ptr<model::Model>> models;
  for (int c = 0; c < v; ++c) {
    const model::PipelineStage stage = pp > 1 ? pipeline_stage(cfg, c * pp + rank, pp * v) : model::PipelineStage{};
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<model::Model> m, model::Model::create(cfg.model, params, tp, cp, stage));
    MEMTRAIN_ASSIGN_OR_RETURN(model::ActivationPolicy policy, cfg.memory.activation_policy(cfg.model.n_layer));
    m->set_activation_policy(std::move(policy));
    models.push_back(std::move(m));
  }
  return models;
}

PipelineRunner::PipelineRunner(parallel::Communicator& pp, std::vector<model::Model*> models, int units,
                               parallel::DataParallel& engine, parallel::PipelineSchedule schedule, model::Param* tied)
    : pp_(pp), models_(std::move(models)), engine_(engine), schedule_(std::move(schedule)), tied_(tied),
      grads_ready_calls_(units, 0), outbox_(std::make_unique<Outbox>(pp)) {}

PipelineRunner::~PipelineRunner() = default;

absl::Status PipelineRunner::progress() {
  next_recv_handle_.test();
  return outbox_->poll();
}

absl::Status PipelineRunner::acquire(int unit, parallel::UnitUse use) {
  MEMTRAIN_RETURN_IF_ERROR(progress());
  return engine_.acquire(unit, use);
}

absl::Status PipelineRunner::release(int unit, parallel::UnitUse use) {
  MEMTRAIN_RETURN_IF_ERROR(progress());
  return engine_.release(unit, use);
}

absl::Status PipelineRunner::post_next_receive(size_t from, const std::vector<Tensor>& tokens) {
  const std::vector<parallel::PipeAction>& list = schedule_.actions[pp_.rank()];
  next_recv_ = -1;
  for (size_t i = from; i < list.size(); ++i) {
    const parallel::PipeAction& a = list[i];
    if (a.op != parallel::PipeOp::kRecvActivation && a.op != parallel::PipeOp::kRecvGrad) continue;
    const bool grad = a.op == parallel::PipeOp::kRecvGrad;
    MEMTRAIN_ASSIGN_OR_RETURN(next_recv_buf_, activation(tokens[a.micro_batch]));
    next_recv_handle_ = pp_.recv_async(next_recv_buf_.f32(), next_recv_buf_.numel(), DType::kF32, a.peer,
                                       tag(a.micro_batch, stage_of(a.chunk), stages(), grad ? kGrad : kActivation));
    next_recv_ = static_cast<int64_t>(i);
    break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PipelineRunner>> PipelineRunner::create(const Config& cfg, parallel::Communicator& pp,
                                                                       std::vector<model::Model*> models,
                                                                       model::ParamSet& params,
                                                                       parallel::DataParallel& engine) {
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::ScheduleKind kind, parallel::parse_schedule_kind(cfg.parallel.pp_schedule));
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::PipelineSchedule schedule,
                            parallel::make_pipeline_schedule({kind, pp.size(), static_cast<int>(cfg.train.grad_accum),
                                                              static_cast<int>(models.size())}));
  model::Param* tied = nullptr;
  const bool first = models.front()->stage().first, last = models.back()->stage().last;
  if (cfg.model.tied() && pp.size() > 1 && (first || last)) {
    tied = params.find(cfg.model.is_llama() ? "model.embed_tokens.weight" : "transformer.wte.weight");
    MEMTRAIN_CHECK(tied != nullptr);
    if (!first) tied->tp.primary = false;  // the first stage's copy carries the whole gradient
  }
  std::unique_ptr<PipelineRunner> runner(
      new PipelineRunner(pp, models, params.num_units(), engine, std::move(schedule), tied));
  for (size_t i = 0; i < params.all().size(); ++i) {  // the engine numbers tensors in registration order
    if (params.all()[i].get() == tied) runner->tied_entry_ = static_cast<int>(i);
  }
  for (model::Model* m : models) m->set_unit_hooks(runner.get());
  return runner;
}

absl::StatusOr<Tensor> PipelineRunner::activation(const Tensor& tokens) const {
  const Shape shape = models_.front()->activation_shape(tokens.dim(0), tokens.dim(1));
  return Tensor::empty(shape, DType::kF32, MemCategory::kActivations);
}

absl::Status PipelineRunner::grads_ready(int unit) {
  const bool last = ++grads_ready_calls_[unit] == schedule_.shape.micro_batches;
  // Under zero bubble a unit's weight gradients come later: run_step finishes every unit at the end.
  if (zero_bubble() || (engine_.stage() <= 1 && !last)) return absl::OkStatus();
  return finish_unit(unit, last);
}

absl::Status PipelineRunner::finish_unit(int unit, bool last) {
  if (last && tied_ != nullptr && first() && unit == tied_->unit) {
    // The last stage's part of the tied embedding's gradient (sent after its last forward).
    MEMTRAIN_RETURN_IF_ERROR(tied_transfer_.wait());
    cpu::add_inplace(tied_->grad.f32(), tied_grad_.f32(), tied_grad_.numel(), ThreadPool::global());
    tied_grad_ = Tensor();
  }
  return engine_.grads_ready(unit);
}

absl::StatusOr<double> PipelineRunner::run_step(const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets,
                                                float grad_scale) {
  const int m = schedule_.shape.micro_batches;
  MEMTRAIN_CHECK(static_cast<int>(tokens.size()) == m && static_cast<int>(targets.size()) == m);
  const auto t_step = Clock::now();
  wait_s_ = 0;
  // Action i receives into the buffer posted ahead; the time its wait blocks is this rank's share of the bubble.
  auto receive = [&](size_t i, Tensor& into) -> absl::Status {
    MEMTRAIN_CHECK(next_recv_ == static_cast<int64_t>(i));
    const auto t0 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(next_recv_handle_.wait());
    wait_s_ += since(t0);
    into = next_recv_buf_;
    next_recv_buf_ = Tensor();
    return post_next_receive(i + 1, tokens);
  };
  MEMTRAIN_RETURN_IF_ERROR(post_next_receive(0, tokens));
  std::fill(grads_ready_calls_.begin(), grads_ready_calls_.end(), 0);
  if (tied_ != nullptr) {
    MEMTRAIN_ASSIGN_OR_RETURN(tied_grad_, Tensor::zeros(tied_->local_shape, DType::kF32, MemCategory::kCommunication));
    if (first()) {
      tied_transfer_ = pp_.recv_async(tied_grad_.f32(), tied_grad_.numel(), DType::kF32, pp_.size() - 1,
                                      tag(0, 0, stages(), kTiedGrad));
    }
  }
  struct MicroBatch {
    model::ActivationStore store;
    Tensor input, grad;  // received from the previous stage / the next stage
    Tensor output;       // to send on: the activation (forward) or the input gradient (backward)
  };
  const int v = schedule_.shape.chunks, S = stages();
  std::vector<MicroBatch> mbs(m * v);  // per (micro-batch, chunk)
  double loss_sum = 0;
  const std::vector<parallel::PipeAction>& list = schedule_.actions[pp_.rank()];
  for (size_t i = 0; i < list.size(); ++i) {
    const parallel::PipeAction& a = list[i];
    MEMTRAIN_FAULT_POINT("pipeline.action");
    MEMTRAIN_RETURN_IF_ERROR(progress());
    MicroBatch& mb = mbs[a.micro_batch * v + a.chunk];
    model::Model& model = *models_[a.chunk];
    const int k = a.micro_batch, stage = stage_of(a.chunk);
    switch (a.op) {
      case parallel::PipeOp::kRecvActivation:
        MEMTRAIN_RETURN_IF_ERROR(receive(i, mb.input));
        break;
      case parallel::PipeOp::kForward: {
        double loss = 0;
        MEMTRAIN_ASSIGN_OR_RETURN(mb.output,
                                  model.forward_stage(tokens[k], targets[k], mb.input, grad_scale, mb.store, &loss));
        mb.input = Tensor();
        loss_sum += loss;
        if (tied_ != nullptr && stage == S - 1) {
          // The head's part of the copy's gradient moves to the sum (at stages 2-3 the copy's gradient buffer is
          // reduced and replaced between forwards); after the last forward the sum goes to the first stage.
          float* g = tied_->grad.f32();
          cpu::add_inplace(tied_grad_.f32(), g, tied_grad_.numel(), ThreadPool::global());
          std::fill_n(g, tied_grad_.numel(), 0.0f);
          if (k == m - 1) {
            tied_transfer_ =
                pp_.send_async(tied_grad_.f32(), tied_grad_.numel(), DType::kF32, 0, tag(0, 0, S, kTiedGrad));
          }
        }
        break;
      }
      case parallel::PipeOp::kSendActivation:
        outbox_->send(mb.output, a.peer, tag(k, stage + 1, S, kActivation));
        mb.output = Tensor();
        break;
      case parallel::PipeOp::kSendGrad:
        outbox_->send(mb.output, a.peer, tag(k, stage - 1, S, kGrad));
        mb.output = Tensor();
        break;
      case parallel::PipeOp::kRecvGrad:
        MEMTRAIN_RETURN_IF_ERROR(receive(i, mb.grad));
        break;
      case parallel::PipeOp::kBackward:
      case parallel::PipeOp::kBackwardInput: {
        mb.store.defer_weight_grads(a.op == parallel::PipeOp::kBackwardInput);
        MEMTRAIN_ASSIGN_OR_RETURN(mb.output, model.backward_stage(mb.grad, mb.store));
        mb.grad = Tensor();
        MEMTRAIN_CHECK_MSG(mb.store.empty(), "activations left after backward");
        break;
      }
      case parallel::PipeOp::kBackwardWeight:
        MEMTRAIN_RETURN_IF_ERROR(mb.store.run_weight_grads());
        break;
    }
  }
  if (zero_bubble()) {
    for (int u = static_cast<int>(grads_ready_calls_.size()) - 1; u >= 0; --u) {
      MEMTRAIN_RETURN_IF_ERROR(finish_unit(u, /*last=*/true));
    }
  }
  const auto t_drain = Clock::now();
  MEMTRAIN_RETURN_IF_ERROR(outbox_->drain());
  if (tied_ != nullptr && last() && !first()) {
    MEMTRAIN_RETURN_IF_ERROR(tied_transfer_.wait());
    tied_grad_ = Tensor();
  }
  wait_s_ += since(t_drain);
  step_s_ = since(t_step);
  return loss_sum;
}

absl::StatusOr<double> PipelineRunner::forward_only(const Tensor& tokens, const Tensor& targets) {
  const int p = pp_.size(), S = stages();
  double loss = 0;
  for (size_t c = 0; c < models_.size(); ++c) {  // the stages in order: a chain through the ranks, v times round
    const int stage = stage_of(static_cast<int>(c));
    model::ActivationStore discard(/*keep=*/false);
    Tensor x;
    if (stage > 0) {
      MEMTRAIN_ASSIGN_OR_RETURN(x, activation(tokens));
      MEMTRAIN_RETURN_IF_ERROR(
          pp_.recv(x.f32(), x.numel(), DType::kF32, (stage - 1) % p, tag(0, stage, S, kActivation)));
    }
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, models_[c]->forward_stage(tokens, targets, x, 0.0f, discard, &loss));
    if (stage < S - 1) {
      MEMTRAIN_RETURN_IF_ERROR(
          pp_.send(out.f32(), out.numel(), DType::kF32, (stage + 1) % p, tag(0, stage + 1, S, kActivation)));
    }
  }
  return loss;
}

absl::Status PipelineRunner::sync_tied_values() {
  if (tied_ == nullptr) return absl::OkStatus();
  const int S = stages();
  if (first()) {  // the whole tensor (gathered at ZeRO-3)
    MEMTRAIN_RETURN_IF_ERROR(engine_.acquire(tied_->unit, parallel::UnitUse::kValues));
    const Tensor& v = tied_->value;
    MEMTRAIN_RETURN_IF_ERROR(pp_.send(v.f32(), v.numel(), DType::kF32, pp_.size() - 1, tag(0, 0, S, kTiedValues)));
    return engine_.release(tied_->unit, parallel::UnitUse::kValues);
  }
  // Into the pieces of the copy this rank stores (the whole tensor below ZeRO-3).
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, Tensor::empty(tied_->local_shape, DType::kF32, MemCategory::kCommunication));
  MEMTRAIN_RETURN_IF_ERROR(pp_.recv(v.f32(), v.numel(), DType::kF32, 0, tag(0, 0, S, kTiedValues)));
  MEMTRAIN_RETURN_IF_ERROR(engine_.bring_values_in(tied_->unit));  // an offloaded shard's unit
  for (const parallel::LocalSegment& s : engine_.stored_values()) {
    if (s.seg.entry == tied_entry_) std::copy_n(v.f32() + s.seg.offset, s.seg.n, s.value);
  }
  return absl::OkStatus();
}

absl::StatusOr<double> PipelineRunner::sum(double local) {
  std::vector<double> all(pp_.size());
  MEMTRAIN_RETURN_IF_ERROR(pp_.all_gather(&local, all.data(), sizeof(double), DType::kU8));
  double total = 0;
  for (double v : all) total += v;
  return total;
}

}  // namespace memtrain::trainer
