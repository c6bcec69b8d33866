#include "trainer/distributed.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::trainer {

absl::Status check_mesh_fits_model(const Config& cfg, const parallel::MeshShape& s) {
  const model::ModelConfig& m = cfg.model;
  const int64_t kv = m.n_kv_head > 0 ? m.n_kv_head : m.n_head;
  if (m.n_head % s.tp != 0)
    return config_error("parallel.tp", absl::StrCat(s.tp, " does not divide model.n_head (", m.n_head, ")"));
  if (kv % s.tp != 0 && s.tp % kv != 0)
    return config_error("parallel.tp", absl::StrCat(s.tp, " and the key/value heads (", kv,
                                                    ") must divide one another"));
  if (m.n_layer % s.pp != 0)
    return config_error("parallel.pp", absl::StrCat(s.pp, " does not divide model.n_layer (", m.n_layer, ")"));
  const int64_t T = cfg.train.resolved_seq_len(m.block_size);
  if (s.cp > 1 && T % (2 * s.cp) != 0)
    return config_error("parallel.cp", absl::StrCat("2 * ", s.cp, " chunks do not divide the sequence length ", T));
  if (s.dp % cfg.zero.hpz_partition_size != 0)
    return config_error("zero.hpz_partition_size", absl::StrCat(cfg.zero.hpz_partition_size,
                                                                " does not divide the data-parallel size ", s.dp));
  for (parallel::Axis a : {parallel::Axis::kTp, parallel::Axis::kCp, parallel::Axis::kPp}) {
    if (s.size(a) > 1)
      return absl::UnimplementedError(absl::StrCat("parallel.", parallel::axis_name(a), " = ", s.size(a),
                                                   ": this build trains with data parallelism only (dp)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<MeshRun> create_mesh_run(parallel::Communicator& world, const Config& cfg) {
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::MeshShape shape, parallel::resolve_mesh_shape(cfg.parallel, world.size()));
  MEMTRAIN_RETURN_IF_ERROR(check_mesh_fits_model(cfg, shape));
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::DeviceMesh mesh, parallel::DeviceMesh::create(world, cfg.parallel));
  MeshRun run{std::move(mesh), nullptr};
  const int h = static_cast<int>(cfg.zero.hpz_partition_size);
  if (cfg.zero.hpz_active(run.dp().size())) {
    // Groups of h consecutive dp ranks: with tp innermost and dp next, these are neighbouring ranks (one node).
    const int r = run.dp().rank();
    MEMTRAIN_ASSIGN_OR_RETURN(run.hpz, run.dp().split(r / h, r, "hpz"));
  }
  return run;
}

absl::StatusOr<std::unique_ptr<parallel::DataParallel>> create_data_parallel(const Config& cfg, MeshRun& run,
                                                                            ModelBundle& bundle) {
  const auto& params = bundle.params.all();
  std::vector<std::vector<parallel::UnitTensor>> units(bundle.params.num_units());
  for (size_t i = 0; i < params.size(); ++i) {
    model::Param& p = *params[i];
    // The engine numbers tensors unit by unit; registration order is unit order, so its entry i is params[i].
    MEMTRAIN_CHECK(i == 0 || params[i - 1]->unit <= p.unit);
    units[p.unit].push_back({p.shape, &p.value, &p.grad});
  }
  parallel::DataParallelOptions opts;
  opts.stage = static_cast<int>(cfg.zero.stage);
  opts.bucket_bytes = static_cast<int64_t>(cfg.parallel.bucket_mb * (1 << 20));
  opts.grad_accum = cfg.train.grad_accum;
  opts.hpz = run.hpz.get();
  opts.quantized_weights = cfg.zero.quantized_weights;
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DataParallel> engine,
                            parallel::DataParallel::create(run.dp(), std::move(units), opts));
  for (const parallel::LocalSegment& s : engine->stored_values()) {
    model::ParamSet::initialize_slice(*params[s.seg.entry], static_cast<uint64_t>(cfg.train.seed), s.seg.offset,
                                      s.seg.n, s.value);
  }
  bundle.model->set_unit_hooks(engine.get());
  return engine;
}

absl::StatusOr<optim::AdamW> create_sharded_adamw(const Config& cfg, const ModelBundle& bundle,
                                                  const parallel::DataParallel& engine) {
  std::vector<optim::OptimTarget> targets;
  for (const parallel::LocalSegment& s : engine.owned())
    targets.push_back({bundle.params.all()[s.seg.entry].get(), s.value, s.grad, s.seg.n});
  return optim::AdamW::create(std::move(targets), cfg.optim);
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

}  // namespace memtrain::trainer
