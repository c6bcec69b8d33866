#include "trainer/checkpointing.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/hdf5_file.h"
#include "core/fault_injection.h"
#include "core/file_io.h"
#include "core/status.h"
#include "model/lora.h"
#include "parallel/mpi_communicator.h"
#include "trainer/checkpoint_file.h"
#include "trainer/pipeline.h"

namespace memtrain::trainer {
namespace {

using checkpoint::GlobalRun;
using checkpoint::Hdf5File;
namespace fs = std::filesystem;

// The file's communicator: MPI-IO over the world, or none for one process.
MPI_Comm file_comm(parallel::Communicator& world) {
  if (world.size() == 1) return MPI_COMM_NULL;
  auto* mpi = dynamic_cast<parallel::MpiCommunicator*>(&world);
  MEMTRAIN_CHECK_MSG(mpi != nullptr, "a multi-rank world is an MPI communicator");
  return mpi->mpi_comm();
}

// Elements [offset, offset + n) of p's local tensor as runs of its global tensor (ascending: a tensor-parallel
// part keeps the global order of its elements).
std::vector<GlobalRun> runs_of(const model::Param& p, int64_t offset, int64_t n) {
  std::vector<GlobalRun> runs;
  model::for_each_global_run(p, [&](int64_t local, int64_t global, int64_t len) {
    const int64_t lo = std::max(local, offset), hi = std::min(local + len, offset + n);
    if (lo < hi) runs.push_back({global + (lo - local), hi - lo});
  });
  return runs;
}

absl::StatusOr<std::vector<Dataset>> datasets(const CheckpointScope& s, const optim::Optimizer::CheckpointStates& st) {
  const Config& cfg = s.cfg;
  // Shapes only: every trained parameter's name and global shape (a fine-tune's adapters), in registration order.
  model::ParamSet whole;
  MEMTRAIN_RETURN_IF_ERROR(create_rank_models(cfg, whole, {}, {}, 0, 1).status());
  // The first pipeline stage that holds each name writes it (a tied tensor is on the first and the last).
  std::map<std::string, int> first_stage;
  const int pp = s.run.pp().size(), pp_rank = s.run.pp().rank();
  for (int r = pp - 1; r >= 0; --r) {
    model::ParamSet stage;
    MEMTRAIN_RETURN_IF_ERROR(create_rank_models(cfg, stage, {}, {}, r, pp).status());
    for (const auto& p : stage.all()) first_stage[p->name] = r;
  }
  std::map<std::string, int> entry_of;
  const auto& params = s.bundle.params.all();
  for (size_t e = 0; e < params.size(); ++e) entry_of[params[e]->name] = static_cast<int>(e);
  MEMTRAIN_RETURN_IF_ERROR(s.engine.bring_values_in());  // an offloaded shard: the values are read or written here
  std::map<int, const parallel::LocalSegment*> stored;
  for (const parallel::LocalSegment& seg : s.engine.stored_values()) stored[seg.seg.entry] = &seg;
  std::map<std::pair<std::string, std::string>, const optim::CheckpointArray*> arrays;  // (parameter, array)
  for (const optim::CheckpointArray& a : st.arrays) arrays[{a.target.param->name, a.name}] = &a;
  // Below ZeRO-3 every engine rank holds all values, and at ZeRO-0 all the optimizer state too: its first writes.
  const bool engine_lead = s.engine.comm().rank() == 0;
  const int stage = s.engine.stage();

  std::vector<Dataset> out;
  for (const auto& g : whole.all()) {
    const auto at = entry_of.find(g->name);
    const model::Param* p = at == entry_of.end() ? nullptr : params[at->second].get();
    const bool first = first_stage[g->name] == pp_rank;
    const bool writer = p != nullptr && p->tp.primary && first;
    Dataset values{"params/" + g->name, g->shape, DType::kF32, {}, {}};
    const auto held = p == nullptr ? stored.end() : stored.find(at->second);
    if (held != stored.end()) {
      const parallel::LocalSegment& seg = *held->second;
      values.read = {runs_of(*p, seg.seg.offset, seg.seg.n), seg.value};
      if (writer && (stage == 3 || engine_lead)) values.write = values.read;
    }
    out.push_back(std::move(values));
    for (const optim::CheckpointArraySpec& spec : optim::checkpoint_layout(*g, cfg.optim)) {
      Dataset array{absl::StrCat("optim/", g->name, "/", spec.name), spec.shape, spec.dtype, {}, {}};
      const auto found = arrays.find({g->name, spec.name});
      if (found != arrays.end()) {
        const optim::CheckpointArray& a = *found->second;
        MEMTRAIN_CHECK_MSG(a.dtype == spec.dtype, "optimizer state array differs from its checkpoint layout");
        if (a.whole) {  // held whole by the rank that updates the whole matrix (one per engine at ZeRO-0)
          array.read = {{{0, shape_numel(spec.shape)}}, a.data};
          if (first && (stage >= 1 || engine_lead)) array.write = array.read;
        } else {
          array.read = {runs_of(*a.target.param, a.target.offset, a.target.n), a.data};
          if (writer && (stage >= 1 || engine_lead)) array.write = array.read;
        }
      }
      out.push_back(std::move(array));
    }
  }
  // PeriodicLoRA and LoRA-GA change the base: its adapted projection weights are stored as base/<name>
  // (every engine rank holds them whole: the engine's first writes; LoRA runs without pipeline stages).
  if (cfg.lora.changes_base()) {
    for (const model::AdaptedProjection& adapted : model::adapted_projections(whole)) {
      const model::Param* g = adapted.W;
      model::Param* p = s.bundle.params.frozen_set()->find(g->name);
      MEMTRAIN_CHECK(p != nullptr && p->value.defined());
      Dataset base{"base/" + g->name, g->shape, DType::kF32, {}, {}};
      base.read = {runs_of(*p, 0, p->value.numel()), p->value.f32()};
      if (p->tp.primary && engine_lead) base.write = base.read;
      out.push_back(std::move(base));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CheckpointSaver>> CheckpointSaver::create(const CheckpointScope& scope) {
  std::unique_ptr<CheckpointSaver> saver(new CheckpointSaver(scope));
  saver->async_ = scope.cfg.train.checkpoint_async;
  const MPI_Comm world = file_comm(scope.world);
  if (saver->async_ && world != MPI_COMM_NULL) {
    int level = 0;
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE) {
      return config_error("train.checkpoint_async",
                          "writes from a background thread, which needs MPI initialized with MPI_THREAD_MULTIPLE");
    }
    if (MPI_Comm_dup(world, &saver->comm_) != MPI_SUCCESS) return absl::InternalError("MPI_Comm_dup failed");
  }
  return saver;
}

CheckpointSaver::~CheckpointSaver() {
  if (writer_.joinable()) writer_.join();
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

absl::Status CheckpointSaver::wait() {
  if (!writer_.joinable()) return absl::OkStatus();
  writer_.join();
  snapshot_ = Tensor();
  return std::exchange(written_, absl::OkStatus());
}

absl::Status CheckpointSaver::save(int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  auto stall = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const CheckpointScope& s = scope_;
  const bool lead = s.world.rank() == 0;
  const absl::Status previous = wait();
  MEMTRAIN_ASSIGN_OR_RETURN(optim::Optimizer::CheckpointStates st, s.opt.checkpoint_state());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<Dataset> all, datasets(s, st));
  const nlohmann::json manifest = {{"format", kCheckpointFormat},
                                   {"step", step},
                                   {"optimizer", s.cfg.optim.name},
                                   {"optimizer_steps", s.opt.steps_taken()},
                                   {"config", dump_config(s.cfg)}};
  const std::string dir = checkpoint_dir(s.cfg);
  const int64_t keep = s.cfg.train.keep_checkpoints;
  if (!async_) {
    const absl::Status written = write_checkpoint(dir, step, keep, all, manifest.dump(), file_comm(s.world), lead,
                                                  [&](absl::Status st) { return agree(s.world, st); });
    stall_s_ = stall();
    return written;
  }
  // This rank's pieces copied out, so that training may change the originals while the writer works.
  int64_t bytes = 0;
  for (const Dataset& d : all) {
    for (const checkpoint::GlobalRun& r : d.write.runs) bytes += r.n * static_cast<int64_t>(dtype_size(d.dtype));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(snapshot_, Tensor::empty({std::max<int64_t>(bytes, 1)}, DType::kU8, MemCategory::kWorkspace));
  char* at = static_cast<char*>(snapshot_.raw());
  for (Dataset& d : all) {
    d.read = {};
    int64_t n = 0;
    for (const checkpoint::GlobalRun& r : d.write.runs) n += r.n;
    if (n == 0) continue;
    const int64_t b = n * static_cast<int64_t>(dtype_size(d.dtype));
    std::memcpy(at, d.write.data, b);
    d.write.data = at;
    at += b;
  }
  writer_ = std::thread([this, dir, step, keep, lead, all = std::move(all), text = manifest.dump()] {
    const MPI_Comm comm = comm_;
    written_ = write_checkpoint(dir, step, keep, all, text, comm, lead, [comm](absl::Status st) {
      return agree_in_background(comm, st, "write the checkpoint");
    });
  });
  stall_s_ = stall();
  return previous;
}

absl::StatusOr<int64_t> resume_from_checkpoint(const CheckpointScope& s) {
  if (s.cfg.train.resume != "auto") return 0;
  const auto start = std::chrono::steady_clock::now();
  const bool lead = s.world.rank() == 0;
  const std::string dir = checkpoint_dir(s.cfg);
  // Rank 0 lists the candidates, newest first; everyone tries the same ones.
  std::vector<int64_t> steps = lead ? checkpoint_steps(dir) : std::vector<int64_t>{};
  int64_t count = static_cast<int64_t>(steps.size());
  MEMTRAIN_RETURN_IF_ERROR(s.world.broadcast(&count, 8, DType::kU8, 0));
  steps.resize(count);
  if (count > 0) MEMTRAIN_RETURN_IF_ERROR(s.world.broadcast(steps.data(), 8 * count, DType::kU8, 0));
  absl::Status newest;
  for (int64_t step : steps) {
    const std::string path = (fs::path(dir) / checkpoint_file_name(step)).string();
    absl::Status loaded;
    int64_t optimizer_steps = 0;
    // The arrays to read, as the optimizer lays its state out after that many steps (LISA's drawn blocks).
    optim::Optimizer::CheckpointStates st;
    std::vector<Dataset> all;
    auto file = Hdf5File::open(path, file_comm(s.world));
    if (!file.ok()) loaded = file.status();
    if (loaded.ok()) {
      // A weights-only checkpoint (memtrain convert) starts the optimizer afresh.
      bool with_optimizer = true;
      auto manifest = read_manifest(**file);
      if (!manifest.ok()) {
        loaded = manifest.status();
      } else if ((*manifest)["optimizer"] == kNoOptimizer) {
        with_optimizer = false;
      } else if ((*manifest)["optimizer"] != s.cfg.optim.name) {
        loaded = config_error("optim.name", absl::StrCat("is ", s.cfg.optim.name, " but ", path, " holds ",
                                                         (*manifest)["optimizer"].get<std::string>(), " state"));
      } else {
        optimizer_steps = (*manifest)["optimizer_steps"].get<int64_t>();
      }
      if (loaded.ok()) {
        MEMTRAIN_RETURN_IF_ERROR(s.opt.prepare_resume(optimizer_steps));
        MEMTRAIN_ASSIGN_OR_RETURN(st, s.opt.checkpoint_state());
        MEMTRAIN_ASSIGN_OR_RETURN(all, datasets(s, st));
        loaded = check_fit(**file, all, with_optimizer);
      }
      if (loaded.ok()) {
        for (const Dataset& d : all) {  // every rank reads the same datasets (collective), keeping its first error
          if (!with_optimizer && d.name.rfind("params/", 0) != 0) continue;
          const absl::Status r = (*file)->read(d.name, d.shape, d.dtype, d.read.runs, d.read.data);
          if (loaded.ok()) loaded = r;
        }
      }
      (void)(*file)->close();
    }
    loaded = agree(s.world, loaded);
    if (loaded.ok()) {
      MEMTRAIN_RETURN_IF_ERROR(s.opt.restore(st, optimizer_steps));
      if (lead && !s.quiet) {
        std::printf("memtrain: resumed from %s (step %lld) in %.3f s\n", path.c_str(), static_cast<long long>(step),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      return step;
    }
    if (loaded.code() == absl::StatusCode::kInvalidArgument) return loaded;  // a config mismatch: no fallback
    if (lead) std::fprintf(stderr, "warning: skipping checkpoint %s: %s\n", path.c_str(), std::string(loaded.message()).c_str());
    if (newest.ok()) newest = loaded;
  }
  if (!steps.empty()) {
    return absl::DataLossError(absl::StrCat("no intact checkpoint in ", dir, "; the newest: ", newest.message()));
  }
  return 0;
}

}  // namespace memtrain::trainer
