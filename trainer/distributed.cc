#include "trainer/distributed.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "checkpoint/snapshot_parity.h"
#include "core/status.h"
#include "model/attention.h"
#include "model/ulysses.h"
#include "optim/lisa.h"
#include "optim/matrix_owners.h"
#include "optim/offloaded_adamw.h"
#include "optim/optimizer.h"
#include "optim/restartable.h"
#include "optim/shard_residency.h"
#include "optim/zo_sgd.h"
#include "trainer/pipeline.h"

namespace memtrain::trainer {

absl::Status check_mesh_fits_model(const Config& cfg, const parallel::MeshShape& s) {
  const model::ModelConfig& m = cfg.model;
  if (std::string why = model::Model::tensor_parallel_mismatch(m, s.tp); !why.empty())
    return config_error("parallel.tp", absl::StrCat(s.tp, " ", why));
  if (cfg.lora.nf4() && s.tp > 1) {
    // A rank's part of a row-parallel projection must be whole NF4 blocks of the whole matrix's rows.
    for (int64_t width : {m.n_embd, m.ffn()}) {
      if (width % (64 * s.tp) != 0)
        return config_error("lora.quantize_base",
                            absl::StrCat("nf4 with parallel.tp = ", s.tp, " needs the model width and the MLP width "
                                         "to be multiples of 64 * tp (whole blocks per rank); ", width, " is not"));
    }
  }
  const std::string& opt = cfg.optim.name;
  if (optim::works_on_whole_matrices(opt) && cfg.zero.stage > 2) {
    return config_error("optim.name", absl::StrCat(opt, " updates whole matrices, which ZeRO-3 never holds: it "
                                                   "needs zero.stage <= 2, got ", cfg.zero.stage));
  }
  const std::vector<int64_t>& layers = cfg.parallel.pp_layers;
  if (!layers.empty()) {
    const int64_t sum = std::accumulate(layers.begin(), layers.end(), int64_t{0});
    if (sum != m.n_layer)
      return config_error("parallel.pp_layers", absl::StrCat("the stages hold ", sum, " layers, model.n_layer is ",
                                                             m.n_layer));
  } else if (m.n_layer % s.pp != 0) {
    return config_error("parallel.pp", absl::StrCat(s.pp, " does not divide model.n_layer (", m.n_layer, ")"));
  } else if (s.pp > 1 && m.n_layer % (s.pp * cfg.parallel.pp_chunks) != 0) {
    return config_error("parallel.pp_chunks", absl::StrCat(s.pp, " ranks x ", cfg.parallel.pp_chunks,
                                                           " chunks do not divide model.n_layer (", m.n_layer, ")"));
  }
  if (s.pp > 1 && cfg.parallel.pp_schedule == "interleaved" && cfg.train.grad_accum % s.pp != 0)
    return config_error("train.grad_accum", absl::StrCat(cfg.train.grad_accum, " micro-batches are not a multiple "
                                                         "of parallel.pp = ", s.pp, " (the interleaved schedule)"));
  const int64_t T = cfg.train.resolved_seq_len(m.block_size);
  const int64_t a2a = cfg.parallel.cp_a2a, ring = s.cp / a2a;
  if (ring > 1 && T % (2 * s.cp) != 0) {
    return config_error("parallel.cp", absl::StrCat(s.cp, " ranks hold 2 * ", s.cp, " chunks (causal load "
                                                    "balancing), which do not divide the sequence length ", T));
  }
  if (a2a > 1) {
    if (T % (ring > 1 ? 2 * s.cp : a2a) != 0)
      return config_error("parallel.cp_a2a", absl::StrCat(a2a, " ranks split each ring chunk, which does not "
                                                          "divide the sequence length ", T));
    const int64_t kv_heads = m.is_llama() ? model::LlamaAttention::local_kv_heads(m, s.tp) : m.n_head / s.tp;
    if (std::string why = model::ulysses_head_mismatch(m.n_head / s.tp, kv_heads, static_cast<int>(a2a));
        !why.empty()) {
      return config_error("parallel.cp_a2a", absl::StrCat(why, " (per tensor-parallel rank)"));
    }
  }
  // The tokens of a sequence one rank holds together.
  const int64_t chunk = s.cp > 1 ? T / (ring > 1 ? 2 * s.cp : s.cp) : T;
  if (cfg.parallel.sequence_parallel && chunk % s.tp != 0)
    return config_error("parallel.sequence_parallel",
                        absl::StrCat("parallel.tp = ", s.tp, " does not divide the ", chunk, " tokens of ",
                                     s.cp > 1 ? "a context-parallel chunk" : "the sequence"));
  if ((s.dp * s.cp) % cfg.zero.hpz_partition_size != 0)
    return config_error("zero.hpz_partition_size", absl::StrCat(cfg.zero.hpz_partition_size,
                                                                " does not divide the data-parallel size dp * cp = ",
                                                                s.dp * s.cp));
  return absl::OkStatus();
}

absl::StatusOr<MeshRun> create_mesh_run(parallel::Communicator& world, const Config& cfg) {
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::MeshShape shape, parallel::resolve_mesh_shape(cfg.parallel, world.size()));
  MEMTRAIN_RETURN_IF_ERROR(check_mesh_fits_model(cfg, shape));
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::DeviceMesh mesh, parallel::DeviceMesh::create(world, cfg.parallel));
  MeshRun run{std::move(mesh), nullptr, nullptr, cfg.parallel.sequence_parallel, nullptr};
  if (shape.cp > 1) {
    // Ranks with the same tp and pp coordinates, ordered cp fastest: consecutive members are neighbours.
    const parallel::MeshCoord& c = run.mesh.coord();
    MEMTRAIN_ASSIGN_OR_RETURN(run.dp_cp, world.split(c.pp * shape.tp + c.tp, c.dp * shape.cp + c.cp, "dp_cp"));
    run.dp_cp->set_timeout_s(cfg.parallel.timeout_s);
  }
  if (const int a2a = static_cast<int>(cfg.parallel.cp_a2a); a2a > 1) {
    // cp rank g = ring rank * a2a + a2a rank: the all-to-all runs between neighbours (the faster links).
    parallel::Communicator& cp = run.mesh.comm(parallel::Axis::kCp);
    const int g = cp.rank();
    MEMTRAIN_ASSIGN_OR_RETURN(run.cp_a2a, cp.split(g / a2a, g % a2a, "cp_a2a"));
    MEMTRAIN_ASSIGN_OR_RETURN(run.cp_ring, cp.split(g % a2a, g / a2a, "cp_ring"));
  }
  if (shape.tp > 1 && cfg.zero.stage >= 1 && uses_matrix_owners(cfg, shape)) {
    const parallel::MeshCoord& c = run.mesh.coord();
    const int q = c.dp * shape.cp + c.cp;  // the engine rank
    MEMTRAIN_ASSIGN_OR_RETURN(run.matrix_group, world.split(c.pp, q * shape.tp + c.tp, "matrix_group"));
    run.matrix_group->set_timeout_s(cfg.parallel.timeout_s);
  }
  const int h = static_cast<int>(cfg.zero.hpz_partition_size);
  if (cfg.zero.hpz_active(run.data_parallel().size())) {
    // Groups of h consecutive data-parallel ranks: with tp innermost, these are neighbouring ranks (one node).
    const int r = run.data_parallel().rank();
    MEMTRAIN_ASSIGN_OR_RETURN(run.hpz, run.data_parallel().split(r / h, r, "hpz"));
  }
  return run;
}

CommTotals comm_totals(parallel::Communicator& world, MeshRun& run) {
  CommTotals t;
  auto add = [&t](const parallel::Communicator* c) {
    if (c == nullptr) return;
    t.bytes += c->bytes_sent();
    t.wait_s += c->wait_s();
  };
  add(&world);
  for (parallel::Axis a : parallel::kAllAxes) add(&run.mesh.comm(a));
  add(run.dp_cp.get());
  add(run.cp_a2a.get());
  add(run.cp_ring.get());
  add(run.hpz.get());
  add(run.matrix_group.get());
  return t;
}

absl::StatusOr<std::unique_ptr<parallel::DataParallel>> create_data_parallel(const Config& cfg, MeshRun& run,
                                                                            ModelBundle& bundle) {
  const auto& params = bundle.params.all();
  std::vector<std::vector<parallel::UnitTensor>> units(bundle.params.num_units());
  for (size_t i = 0; i < params.size(); ++i) {
    model::Param& p = *params[i];
    // The engine numbers tensors unit by unit; registration order is unit order, so its entry i is params[i].
    MEMTRAIN_CHECK(i == 0 || params[i - 1]->unit <= p.unit);
    units[p.unit].push_back({p.local_shape, &p.value, &p.grad});
  }
  parallel::DataParallelOptions opts;
  opts.stage = static_cast<int>(cfg.zero.stage);
  opts.bucket_bytes = static_cast<int64_t>(cfg.parallel.bucket_mb * (1 << 20));
  // A pipeline accumulates all micro-batches itself and tells the engine about a unit once, at the step's end.
  opts.grad_accum = run.pp().size() > 1 ? 1 : cfg.train.grad_accum;
  opts.hpz = run.hpz.get();
  opts.quantized_weights = cfg.zero.quantized_weights;
  opts.gradients = cfg.optim.name != "zo_sgd";  // forwards only
  if (cfg.offload.parameters_offloaded())
    opts.param_tier = cfg.offload.parameters == "ssd" ? bundle.ssd_swap.get() : bundle.host_swap.get();
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DataParallel> engine,
                            parallel::DataParallel::create(run.data_parallel(), std::move(units), opts));
  // Full fine-tuning from model.from_hf starts from its weights; adapters and new models from the seed.
  std::optional<HfModel> hf;
  if (!cfg.lora.enabled()) {
    MEMTRAIN_ASSIGN_OR_RETURN(hf, read_starting_weights(cfg));
  }
  // Unit by unit, so that an offloaded shard (offload.parameters) has one unit in memory at a time.
  const std::vector<parallel::LocalSegment>& stored = engine->stored_values();
  for (size_t i = 0; i < stored.size(); ++i) {
    const parallel::LocalSegment& s = stored[i];
    const model::Param& p = *params[s.seg.entry];
    MEMTRAIN_RETURN_IF_ERROR(engine->bring_values_in(s.seg.unit));
    if (hf) {
      model::ParamSet::copy_local(p, hf->params.at(p.name).f32(), s.seg.offset, s.seg.n, s.value);
    } else {
      model::ParamSet::initialize_local(p, static_cast<uint64_t>(cfg.train.seed), s.seg.offset, s.seg.n, s.value);
    }
    if (i + 1 == stored.size() || stored[i + 1].seg.unit != s.seg.unit)
      MEMTRAIN_RETURN_IF_ERROR(engine->send_values_out(s.seg.unit));
  }
  bundle.model->set_unit_hooks(engine.get());
  return engine;
}

bool uses_matrix_owners(const Config& cfg, const parallel::MeshShape& mesh) {
  if (!optim::works_on_whole_matrices(cfg.optim.name)) return false;
  return mesh.tp > 1 || (cfg.zero.stage >= 1 && mesh.dp * mesh.cp > 1);
}

absl::StatusOr<optim::MatrixGroup> matrix_group_shapes(const Config& cfg, const parallel::MeshShape& mesh,
                                                       int pp_rank, std::vector<model::ParamSet>& parts) {
  optim::MatrixGroup group;
  group.tp = mesh.tp;
  group.sharded = cfg.zero.stage >= 1;
  parts = std::vector<model::ParamSet>(mesh.tp);
  for (int t = 0; t < mesh.tp; ++t) {
    MEMTRAIN_RETURN_IF_ERROR(create_rank_models(cfg, parts[t],
                                                model::TensorParallel::shapes_of_rank(t, mesh.tp,
                                                                                      cfg.parallel.sequence_parallel),
                                                {}, pp_rank, mesh.pp)
                                 .status());
    std::vector<const model::Param*> params;
    std::vector<std::vector<int64_t>> units(parts[t].num_units());
    for (const auto& p : parts[t].all()) {
      params.push_back(p.get());
      units[p->unit].push_back(shape_numel(p->local_shape));  // as the engine numbers them
    }
    group.params.push_back(std::move(params));
    group.layouts.emplace_back(std::move(units), mesh.dp * mesh.cp);
  }
  return group;
}

namespace {

absl::StatusOr<std::unique_ptr<optim::Optimizer>> optimizer_of_rank(const Config& cfg, MeshRun& run,
                                                                   const ModelBundle& bundle,
                                                                   const parallel::DataParallel& engine) {
  const uint64_t seed = static_cast<uint64_t>(cfg.train.seed);
  if (uses_matrix_owners(cfg, run.mesh.shape())) {
    std::vector<model::ParamSet> parts;
    MEMTRAIN_ASSIGN_OR_RETURN(optim::MatrixGroup group,
                              matrix_group_shapes(cfg, run.mesh.shape(), run.pp().rank(), parts));
    // This rank's own part is its model's (the optimizer keeps pointers to its parameters).
    const int t = run.mesh.coord().tp;
    MEMTRAIN_CHECK(group.layouts[t].full_size() == engine.layout().full_size());
    for (size_t e = 0; e < group.params[t].size(); ++e) group.params[t][e] = bundle.params.all()[e].get();
    parallel::Communicator& comm = run.matrix_group       ? *run.matrix_group
                                   : group.sharded        ? engine.comm()
                                                          : run.mesh.comm(parallel::Axis::kTp);
    return optim::MatrixOwners::create(comm, group, engine.owned(), engine.stored_values(), cfg.optim, seed);
  }
  auto targets_of = [&](const std::vector<parallel::LocalSegment>& segments) {
    std::vector<optim::OptimTarget> targets;
    for (const parallel::LocalSegment& s : segments)
      targets.push_back({bundle.params.all()[s.seg.entry].get(), s.value, s.grad, s.seg.n, s.seg.offset});
    return targets;
  };
  std::vector<optim::OptimTarget> targets = targets_of(engine.owned());
  if (cfg.optim.name == "zo_sgd")  // perturbs every value this rank's forward reads, updates its own
    return std::unique_ptr<optim::Optimizer>(optim::ZoSgd::create(std::move(targets),
                                                                  targets_of(engine.stored_values()), cfg.optim, seed));
  if (cfg.optim.lisa_layers > 0) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Lisa> opt,
                              optim::Lisa::create(std::move(targets), cfg.optim, cfg.model.n_layer, seed));
    return std::unique_ptr<optim::Optimizer>(std::move(opt));
  }
  if (cfg.offload.optimizer_on_ssd()) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::OffloadedAdamW> opt,
                              optim::OffloadedAdamW::create(std::move(targets), cfg.optim, bundle.ssd_swap.get()));
    return std::unique_ptr<optim::Optimizer>(std::move(opt));
  }
  return optim::create_optimizer(std::move(targets), cfg.optim, seed);
}

}  // namespace

absl::StatusOr<std::unique_ptr<optim::Optimizer>> create_sharded_optimizer(const Config& cfg, MeshRun& run,
                                                                          const ModelBundle& bundle,
                                                                          const parallel::DataParallel& engine) {
  if (cfg.lora.periodic()) {  // PeriodicLoRA: the adapters' state starts again with each stage
    auto make = [&cfg, &run, &bundle, &engine] { return optimizer_of_rank(cfg, run, bundle, engine); };
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Restartable> opt,
                              optim::Restartable::create(make, cfg.lora.periodic_interval));
    return std::unique_ptr<optim::Optimizer>(std::move(opt));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Optimizer> opt, optimizer_of_rank(cfg, run, bundle, engine));
  if (engine.offloaded_values() != nullptr) {  // the shard's units come in for their update (offload.parameters)
    MEMTRAIN_CHECK_MSG(opt->takes_value_residency(), "config validation lets only adamw and adamw8bit through");
    opt->set_value_residency(std::make_unique<optim::ShardResidency>(engine));
  }
  return opt;
}

absl::StatusOr<double> mesh_grad_norm(MeshRun& run, const ModelBundle& bundle, parallel::DataParallel& engine) {
  if (run.mesh.size(parallel::Axis::kTp) == 1 && run.pp().size() == 1) return engine.grad_norm();
  double local = 0;
  for (const parallel::LocalSegment& s : engine.owned()) {
    if (!bundle.params.all()[s.seg.entry]->tp.primary) continue;
    for (int64_t i = 0; i < s.seg.n; ++i) local += static_cast<double>(s.grad[i]) * s.grad[i];
  }
  // Below stage 1 every dp rank owns (and has reduced) everything: count one copy.
  double over_dp = local;
  if (engine.stage() >= 1) {
    MEMTRAIN_ASSIGN_OR_RETURN(over_dp, engine.sum_over_ranks(local));
  }
  double total = over_dp;
  for (parallel::Axis a : {parallel::Axis::kTp, parallel::Axis::kPp}) {
    parallel::Communicator& comm = run.mesh.comm(a);
    std::vector<double> all(comm.size());
    MEMTRAIN_RETURN_IF_ERROR(comm.all_gather(&total, all.data(), 8, DType::kU8));
    total = 0;  // in rank order, so every rank gets the same bits
    for (double v : all) total += v;
  }
  return std::sqrt(total);
}

absl::Status gather_tp_parts(parallel::Communicator& tp, const float* part,
                             const std::vector<const model::Param*>& rank_parts, float* whole) {
  std::vector<int64_t> counts(tp.size());
  int64_t total = 0;
  for (int r = 0; r < tp.size(); ++r) total += counts[r] = shape_numel(rank_parts[r]->local_shape);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor blocks, Tensor::empty({total}, DType::kF32, MemCategory::kWorkspace));
  MEMTRAIN_RETURN_IF_ERROR(tp.all_gather_v(part, blocks.f32(), counts, DType::kF32));
  const float* src = blocks.f32();
  for (int r = 0; r < tp.size(); ++r) {
    model::for_each_global_run(*rank_parts[r], [&](int64_t l, int64_t g, int64_t n) { std::copy_n(src + l, n, whole + g); });
    src += counts[r];
  }
  return absl::OkStatus();
}

void store_global_value(const model::Param& p, const float* global, const parallel::DataParallel& engine,
                        const model::ParamSet& trainable) {
  if (p.frozen) {
    model::ParamSet::copy_local(p, global, 0, p.value.numel(), p.value.f32());
    return;
  }
  for (const parallel::LocalSegment& seg : engine.stored_values()) {
    if (trainable.all()[seg.seg.entry].get() != &p) continue;
    model::ParamSet::copy_local(p, global, seg.seg.offset, seg.seg.n, seg.value);
  }
}

absl::StatusOr<std::unique_ptr<ModelBundle>> gather_tensor_parallel(const Config& cfg, MeshRun& run,
                                                                    const ModelBundle& local) {
  parallel::Communicator& tp = run.mesh.comm(parallel::Axis::kTp);
  const int pp_rank = run.pp().rank(), pp = run.pp().size();
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ModelBundle> global,
                            build_model(cfg, /*allocate=*/true, {}, {}, pp_rank, pp));
  // Every rank's split of every parameter, from the shapes-only models of that rank.
  std::vector<model::ParamSet> parts(tp.size());
  for (int r = 0; r < tp.size(); ++r) {
    MEMTRAIN_RETURN_IF_ERROR(
        create_rank_models(cfg, parts[r], model::TensorParallel::shapes_of_rank(r, tp.size()), {}, pp_rank, pp)
            .status());
  }
  // Set by set: what trains, and where PeriodicLoRA or LoRA-GA changed it the frozen base too.
  auto gather_set = [&](const model::ParamSet& mine_set, auto part_of, const model::ParamSet& global_set) -> absl::Status {
    const auto& mine = mine_set.all();
    for (size_t i = 0; i < mine.size(); ++i) {
      std::vector<const model::Param*> rank_parts;
      for (int r = 0; r < tp.size(); ++r) rank_parts.push_back(part_of(r).all()[i].get());
      for (bool grads : {false, true}) {
        const Tensor& part = grads ? mine[i]->grad : mine[i]->value;
        // Stages 2-3 free gradients, a frozen tensor has none, an NF4 one no fp32 value (on every rank alike).
        if (!part.defined()) continue;
        const model::Param& whole = *global_set.all()[i];
        MEMTRAIN_RETURN_IF_ERROR(gather_tp_parts(tp, part.f32(), rank_parts, (grads ? whole.grad : whole.value).f32()));
      }
    }
    return absl::OkStatus();
  };
  MEMTRAIN_RETURN_IF_ERROR(
      gather_set(local.params, [&](int r) -> const model::ParamSet& { return parts[r]; }, global->params));
  if (cfg.lora.changes_base()) {
    MEMTRAIN_RETURN_IF_ERROR(gather_set(
        *local.params.frozen_set(), [&](int r) -> const model::ParamSet& { return *parts[r].frozen_set(); },
        *global->params.frozen_set()));
  }
  return global;
}

absl::StatusOr<std::unique_ptr<ModelBundle>> gather_pipeline(const Config& cfg, MeshRun& run,
                                                             const ModelBundle& stage_model) {
  parallel::Communicator& pp = run.pp();
  if (pp.rank() != 0) {  // send every parameter of this stage, in its registration order
    for (const auto& p : stage_model.params.all()) {
      MEMTRAIN_RETURN_IF_ERROR(pp.send(p->value.f32(), p->value.numel(), DType::kF32, 0));
    }
    return std::unique_ptr<ModelBundle>();
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ModelBundle> whole, build_model(cfg, /*allocate=*/true));
  for (int r = 0; r < pp.size(); ++r) {
    // Rank r's parameters, names and order from its shapes-only models (a tied embedding arrives twice: equal).
    model::ParamSet names;
    MEMTRAIN_RETURN_IF_ERROR(create_rank_models(cfg, names, {}, {}, r, pp.size()).status());
    for (size_t i = 0; i < names.all().size(); ++i) {
      model::Param* dst = whole->params.find(names.all()[i]->name);
      MEMTRAIN_CHECK(dst != nullptr);
      if (r == 0) {
        const Tensor& src = stage_model.params.all()[i]->value;
        std::copy_n(src.f32(), src.numel(), dst->value.f32());
      } else {
        MEMTRAIN_RETURN_IF_ERROR(pp.recv(dst->value.f32(), dst->value.numel(), DType::kF32, r));
      }
    }
  }
  return whole;
}

absl::Status agree(parallel::Communicator& world, absl::Status local) {
  const int32_t mine = static_cast<int32_t>(local.code());
  std::vector<int32_t> codes(world.size());
  MEMTRAIN_RETURN_IF_ERROR(world.all_gather(&mine, codes.data(), 1, DType::kI32));
  if (!local.ok()) return local;
  for (int k = 0; k < world.size(); ++k) {
    if (codes[k] != 0)
      return absl::Status(static_cast<absl::StatusCode>(codes[k]),
                          absl::StrCat("rank ", k, " failed (its error is printed above)"));
  }
  return absl::OkStatus();
}

absl::Status agree_in_background(MPI_Comm comm, absl::Status local, const char* what) {
  if (comm == MPI_COMM_NULL) return local;
  int failed = local.ok() ? 0 : 1;
  std::vector<MPI_Request> req(1);
  MPI_Iallreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm, req.data());
  MEMTRAIN_RETURN_IF_ERROR(checkpoint::wait_politely(req));
  return failed && local.ok() ? absl::UnavailableError(absl::StrCat("another rank failed to ", what)) : local;
}

}  // namespace memtrain::trainer
