#include "trainer/lora_ga.h"

#include <lapacke.h>

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "model/lora.h"
#include "trainer/pipeline.h"

namespace memtrain::trainer {

absl::Status lora_ga_factors(const float* G, int64_t out, int64_t in, int64_t r, double gamma, float* A, float* B) {
  const int64_t k = std::min(out, in);
  if (2 * r > k) {
    return config_error("lora.r", absl::StrCat(r, ": LoRA-GA takes B from singular vectors r..2r of a ", out, "x", in,
                                               " gradient, so 2r must be <= ", k));
  }
  std::vector<double> g(G, G + out * in), s(k), u(out * k), vt(k * in);
  const lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', out, in, g.data(), in, s.data(), u.data(), k,
                                         vt.data(), in);
  if (info != 0) return absl::InternalError(absl::StrCat("LoRA-GA: the SVD of a ", out, "x", in, " gradient failed (", info, ")"));
  const double c = std::pow(static_cast<double>(out), 0.25) / std::sqrt(gamma);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < in; ++j) A[i * in + j] = static_cast<float>(c * vt[i * in + j]);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < r; ++i) B[o * r + i] = static_cast<float>(c * u[o * k + r + i]);
  return absl::OkStatus();
}

absl::Status lora_ga_initialize(const Config& cfg, parallel::Communicator& world, MeshRun& run, ModelBundle& bundle,
                                parallel::DataParallel& engine, const RunData& data) {
  const std::vector<model::AdaptedProjection> targets = model::adapted_projections(bundle.params);
  // The frozen weights take gradients for the estimate (workspace, freed at the end).
  std::vector<Tensor> grads;
  for (const model::AdaptedProjection& t : targets) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor g, Tensor::empty(t.W->local_shape, DType::kF32, MemCategory::kWorkspace));
    g.fill_zero();
    t.W->grad = g;
    t.W->frozen = false;
    grads.push_back(std::move(g));
  }
  const int64_t B = cfg.train.batch_size, accum = cfg.train.grad_accum, dp_rank = run.dp().rank();
  MEMTRAIN_ASSIGN_OR_RETURN(Batch batch, data.make_batch(B));
  absl::Status ran;
  for (int64_t step = 0; step < cfg.lora.ga_batches && ran.ok(); ++step) {
    // The loss of each batch is its mean, as training scales it; the estimate averages the batches.
    const float grad_scale = 1.0f / static_cast<float>(data.train_normalizer(step) * cfg.lora.ga_batches);
    for (int64_t micro = 0; micro < accum && ran.ok(); ++micro) {
      const int64_t row = (dp_rank * accum + micro) * B;
      data.fill_train(step, row, row + B, batch);
      ran = engine.begin_micro_batch(micro);
      model::ActivationStore store;
      batch.apply(store);
      if (ran.ok()) ran = bundle.model->forward(batch.inputs, batch.targets, grad_scale, store).status();
      if (ran.ok()) ran = bundle.model->backward(store);
    }
    if (ran.ok()) ran = engine.finish_gradients();
    if (ran.ok()) ran = engine.finish_step();  // nothing changed: keeps the engine's step order
  }
  for (const model::AdaptedProjection& t : targets) {
    t.W->frozen = true;
    t.W->grad = Tensor();
  }
  MEMTRAIN_RETURN_IF_ERROR(ran);

  parallel::Communicator& tp = run.mesh.comm(parallel::Axis::kTp);
  std::vector<model::ParamSet> parts(tp.size());  // every tp rank's split, for the gathers
  for (int r = 0; r < tp.size(); ++r) {
    MEMTRAIN_RETURN_IF_ERROR(
        create_rank_models(cfg, parts[r], model::TensorParallel::shapes_of_rank(r, tp.size()), {}, 0, 1).status());
  }
  const float scale = cfg.lora.scale();
  const int64_t r = cfg.lora.r;
  for (size_t k = 0; k < targets.size(); ++k) {
    const model::AdaptedProjection& t = targets[k];
    Tensor& g = grads[k];
    MEMTRAIN_RETURN_IF_ERROR(
        run.data_parallel().all_reduce(g.f32(), g.f32(), g.numel(), DType::kF32, parallel::ReduceOp::kSum));
    const int64_t out = t.B->shape[0], in = t.A->shape[1];
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor whole, Tensor::empty(t.W->shape, DType::kF32, MemCategory::kWorkspace));
    if (tp.size() > 1) {
      std::vector<const model::Param*> rank_parts;
      for (int q = 0; q < tp.size(); ++q) rank_parts.push_back(parts[q].frozen_set()->all()[t.index].get());
      MEMTRAIN_RETURN_IF_ERROR(gather_tp_parts(tp, g.f32(), rank_parts, whole.f32()));
    } else {
      std::copy_n(g.f32(), g.numel(), whole.f32());
    }
    g = Tensor();
    // The factors from world rank 0's SVD, so that every rank holds the same bits.
    std::vector<float> A0(r * in), B0(out * r);
    absl::Status factored;
    if (world.rank() == 0) {
      std::vector<float> oi(out * in);  // G as (out, in)
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) oi[o * in + i] = t.W->in_out ? whole.f32()[i * out + o] : whole.f32()[o * in + i];
      factored = lora_ga_factors(oi.data(), out, in, r, cfg.lora.ga_gamma, A0.data(), B0.data());
    }
    MEMTRAIN_RETURN_IF_ERROR(agree(world, factored));
    MEMTRAIN_RETURN_IF_ERROR(world.broadcast(A0.data(), A0.size(), DType::kF32, 0));
    MEMTRAIN_RETURN_IF_ERROR(world.broadcast(B0.data(), B0.size(), DType::kF32, 0));
    store_global_value(*t.A, A0.data(), engine, bundle.params);
    store_global_value(*t.B, B0.data(), engine, bundle.params);
    // W -= scale * B0 A0 on this rank's part, from the parts of A0 and B0 a rank holding W holds (restart_adapters'
    // reasoning: the local product is the local part).
    std::vector<float> a(shape_numel(t.A->local_shape)), b(shape_numel(t.B->local_shape));
    model::ParamSet::copy_local(*t.A, A0.data(), 0, a.size(), a.data());
    model::ParamSet::copy_local(*t.B, B0.data(), 0, b.size(), b.data());
    model::lora_merge({t.A->local_shape[1], t.B->local_shape[0], r, -scale, a.data(), b.data(), nullptr, nullptr},
                      t.W->in_out, t.W->value.f32(), ThreadPool::global());
  }
  return absl::OkStatus();
}

}  // namespace memtrain::trainer
