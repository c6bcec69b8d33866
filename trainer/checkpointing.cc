#include "trainer/checkpointing.h"

#include <sys/statvfs.h>

#include <algorithm>
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
#include "parallel/mpi_communicator.h"
#include "trainer/pipeline.h"

namespace memtrain::trainer {
namespace {

using checkpoint::GlobalRun;
using checkpoint::Hdf5File;
namespace fs = std::filesystem;

constexpr int kFormat = 1;
// The manifest's "optimizer" of a checkpoint that holds weights only.
constexpr char kNoOptimizer[] = "none";

std::string checkpoint_dir(const Config& cfg) { return (fs::path(cfg.output.dir) / "checkpoints").string(); }
std::string file_name(int64_t step) { return absl::StrFormat("step_%08d.h5", step); }

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

// One array of this rank for one dataset: its runs and where its elements live (packed in run order).
struct Piece {
  std::vector<GlobalRun> runs;
  void* data = nullptr;
};

// Every dataset of the checkpoint in the order all ranks visit them, with this rank's pieces: those it writes (each
// element by exactly one rank) and those it reads back (everything it holds).
struct Dataset {
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  Piece write, read;
};

absl::StatusOr<std::vector<Dataset>> datasets(const CheckpointScope& s, const optim::Optimizer::CheckpointStates& st) {
  const Config& cfg = s.cfg;
  model::ParamSet whole;  // shapes only: every parameter's name and global shape, in registration order
  MEMTRAIN_RETURN_IF_ERROR(model::Model::create(cfg.model, whole).status());
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
  return out;
}

// The steps of the checkpoints in dir (complete files only, no .tmp), newest first.
std::vector<int64_t> checkpoint_steps(const std::string& dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const std::string n = f.path().filename().string();
    long long step = 0;
    char tail = 0;
    if (std::sscanf(n.c_str(), "step_%lld.h%c", &step, &tail) == 2 && n == file_name(step)) steps.push_back(step);
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

// After the step's file was written to its .tmp name with status `written`: on success renames it into place, points
// `latest` at it and removes all but the newest `keep`; on any failure removes the .tmp and leaves the previous
// checkpoints as they were.
absl::Status publish(const std::string& dir, int64_t step, int64_t keep, absl::Status written) {
  const std::string path = (fs::path(dir) / file_name(step)).string(), tmp = path + ".tmp";
  if (written.ok()) written = commit_file(tmp, path);
  if (written.ok()) written = write_file_atomically((fs::path(dir) / "latest").string(), {file_name(step) + "\n"});
  std::error_code ec;
  if (!written.ok()) {
    fs::remove(tmp, ec);
    return written;
  }
  const std::vector<int64_t> steps = checkpoint_steps(dir);
  for (size_t k = static_cast<size_t>(keep); k < steps.size(); ++k) fs::remove(fs::path(dir) / file_name(steps[k]), ec);
  return absl::OkStatus();
}

// A failed write's status with the free space left where it was writing: HDF5 reports that a write failed, not
// why, and a full disk is the usual reason.
absl::Status with_free_space(const absl::Status& s, const std::string& dir) {
  struct statvfs v;
  if (::statvfs(dir.c_str(), &v) != 0) return s;
  const uint64_t free = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  const bool full = free < (uint64_t{1} << 20);
  return absl::Status(full ? absl::StatusCode::kResourceExhausted : s.code(),
                      absl::StrCat(s.message(), full ? " (the disk is full: " : " (", free, " bytes free in ", dir, ")"));
}

// ResourceExhausted, before anything is written, when the disk holding `path` (in `dir`) has less room than the file
// of these datasets may take.
absl::Status check_room(const std::string& dir, const std::string& path,
                        const std::vector<checkpoint::StoredShape>& shapes, const std::string& manifest) {
  const int64_t need = checkpoint::file_size_bound(shapes, static_cast<int64_t>(manifest.size()));
  struct statvfs v;
  if (::statvfs(dir.c_str(), &v) != 0) return absl::OkStatus();  // unknown: try
  const int64_t free = static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
  if (free >= need) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(path, ": not enough space for the checkpoint: it may take ", need,
                                                   " bytes, ", free, " are free (No space left on device)"));
}

// The manifest attribute, parsed; DataLoss when it is not a JSON object with the fields every save writes.
absl::StatusOr<nlohmann::json> read_manifest(const Hdf5File& file) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::string text, file.attribute("manifest"));
  nlohmann::json m = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object() || !m.contains("step") || !m["step"].is_number_integer() ||
      !m.contains("optimizer") || !m["optimizer"].is_string() || !m.contains("optimizer_steps") ||
      !m["optimizer_steps"].is_number_integer() || !m.contains("config") || !m["config"].is_string()) {
    return absl::DataLossError(absl::StrCat(file.path(), ": unreadable manifest"));
  }
  return m;
}

// Whether the file holds every dataset a resume reads, with the shapes this model needs, and no parameter the model
// lacks: InvalidArgument listing every difference when not (a different model, not a damaged file).
absl::Status check_fit(const Hdf5File& file, const std::vector<Dataset>& all, bool with_optimizer) {
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const Dataset& d : all) {
    if (!with_optimizer && d.name.rfind("params/", 0) != 0) continue;
    expected.insert(d.name);
    auto info = file.info(d.name);
    if (!info.ok()) {
      problems.push_back(absl::StrCat("missing ", d.name));
    } else if (info->shape != d.shape || info->dtype != d.dtype) {
      problems.push_back(absl::StrCat(d.name, " is ", dtype_name(info->dtype), shape_string(info->shape),
                                      " in the file, the model needs ", dtype_name(d.dtype), shape_string(d.shape)));
    }
  }
  for (const std::string& name : file.datasets_in("params")) {
    if (!expected.count("params/" + name)) problems.push_back(absl::StrCat("params/", name, " is not in this model"));
  }
  if (problems.empty()) return absl::OkStatus();
  const size_t shown = std::min<size_t>(problems.size(), 12);
  std::string list = absl::StrJoin(problems.begin(), problems.begin() + shown, "; ");
  if (shown < problems.size()) absl::StrAppend(&list, "; and ", problems.size() - shown, " more");
  return config_error("model", absl::StrCat(file.path(), " does not fit this model: ", list));
}

}  // namespace

absl::Status save_checkpoint(const CheckpointScope& s, int64_t step) {
  const bool lead = s.world.rank() == 0;
  const std::string dir = checkpoint_dir(s.cfg);
  const std::string path = (fs::path(dir) / file_name(step)).string(), tmp = path + ".tmp";
  absl::Status ready;
  if (lead) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) ready = absl::UnavailableError(absl::StrCat(dir, ": cannot create: ", ec.message()));
    for (const auto& f : fs::directory_iterator(dir, ec)) {  // saves a kill cut short
      if (f.path().extension() == ".tmp") fs::remove(f.path(), ec);
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(agree(s.world, ready));
  MEMTRAIN_ASSIGN_OR_RETURN(optim::Optimizer::CheckpointStates st, s.opt.checkpoint_state());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<Dataset> all, datasets(s, st));
  const nlohmann::json manifest = {{"format", kFormat},
                                   {"step", step},
                                   {"optimizer", s.cfg.optim.name},
                                   {"optimizer_steps", s.opt.steps_taken()},
                                   {"config", dump_config(s.cfg)}};
  const std::string manifest_text = manifest.dump();
  if (lead) {
    std::vector<checkpoint::StoredShape> shapes;
    for (const Dataset& d : all) shapes.push_back({d.shape, d.dtype});
    ready = check_room(dir, path, shapes, manifest_text);
  }
  MEMTRAIN_RETURN_IF_ERROR(agree(s.world, ready));
  absl::Status written;
  {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5File> file, Hdf5File::create(tmp, file_comm(s.world)));
    // Every rank goes through every dataset (the calls are collective), keeping its first error.
    for (const Dataset& d : all) {
      const absl::Status w = file->write(d.name, d.shape, d.dtype, d.write.runs, d.write.data);
      if (written.ok()) written = w;
    }
    const absl::Status m = file->set_attribute("manifest", manifest_text);
    if (written.ok()) written = m;
    const absl::Status c = file->close();
    if (written.ok()) written = c;
  }
  if (!written.ok()) written = with_free_space(written, dir);
  MEMTRAIN_FAULT_POINT("checkpoint.after_write");
  absl::Status committed = agree(s.world, written);
  if (lead) committed = publish(dir, step, s.cfg.train.keep_checkpoints, committed);
  return agree(s.world, committed);
}

absl::StatusOr<int64_t> resume_from_checkpoint(const CheckpointScope& s) {
  if (s.cfg.train.resume != "auto") return 0;
  const bool lead = s.world.rank() == 0;
  const std::string dir = checkpoint_dir(s.cfg);
  // Rank 0 lists the candidates, newest first; everyone tries the same ones.
  std::vector<int64_t> steps = lead ? checkpoint_steps(dir) : std::vector<int64_t>{};
  int64_t count = static_cast<int64_t>(steps.size());
  MEMTRAIN_RETURN_IF_ERROR(s.world.broadcast(&count, 8, DType::kU8, 0));
  steps.resize(count);
  if (count > 0) MEMTRAIN_RETURN_IF_ERROR(s.world.broadcast(steps.data(), 8 * count, DType::kU8, 0));
  MEMTRAIN_ASSIGN_OR_RETURN(optim::Optimizer::CheckpointStates st, s.opt.checkpoint_state());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<Dataset> all, datasets(s, st));
  absl::Status newest;
  for (int64_t step : steps) {
    const std::string path = (fs::path(dir) / file_name(step)).string();
    absl::Status loaded;
    int64_t optimizer_steps = 0;
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
      if (loaded.ok()) loaded = check_fit(**file, all, with_optimizer);
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
      if (lead && !s.quiet) std::printf("memtrain: resumed from %s (step %lld)\n", path.c_str(), static_cast<long long>(step));
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

namespace {

// Every parameter of cfg's whole model as a dataset read whole by one process.
absl::StatusOr<std::vector<Dataset>> whole_params(const Config& cfg) {
  model::ParamSet whole;
  MEMTRAIN_RETURN_IF_ERROR(model::Model::create(cfg.model, whole).status());
  std::vector<Dataset> all;
  for (const auto& p : whole.all()) {
    const std::vector<GlobalRun> runs = {{0, shape_numel(p->shape)}};
    all.push_back({"params/" + p->name, p->shape, DType::kF32, {runs, nullptr}, {runs, nullptr}});
  }
  return all;
}

absl::StatusOr<std::string> resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return path;
  for (const fs::path& dir : {fs::path(path), fs::path(path) / "checkpoints"}) {
    if (!fs::exists(dir / "latest", ec)) continue;
    MEMTRAIN_ASSIGN_OR_RETURN(std::string name, read_file((dir / "latest").string()));
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (name.empty() || name.find('/') != std::string::npos)
      return absl::DataLossError(absl::StrCat((dir / "latest").string(), ": does not name a checkpoint file"));
    return (dir / name).string();
  }
  return absl::NotFoundError(absl::StrCat(path, ": neither a checkpoint file nor a directory with a `latest` one"));
}

}  // namespace

absl::StatusOr<CheckpointWeights> read_checkpoint_weights(const std::string& path) {
  CheckpointWeights out;
  MEMTRAIN_ASSIGN_OR_RETURN(out.path, resolve_checkpoint(path));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5File> file, Hdf5File::open(out.path, MPI_COMM_NULL));
  MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json manifest, read_manifest(*file));
  out.manifest_json = manifest.dump();
  MEMTRAIN_ASSIGN_OR_RETURN(out.config, parse_config(manifest["config"].get<std::string>(),
                                                     out.path + " (manifest config)", {}, /*validate=*/false));
  MEMTRAIN_RETURN_IF_ERROR(out.config.model.validate());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<Dataset> all, whole_params(out.config));
  MEMTRAIN_RETURN_IF_ERROR(check_fit(*file, all, /*with_optimizer=*/false));
  for (const Dataset& d : all) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor t, Tensor::empty(d.shape, DType::kF32, MemCategory::kParameters));
    MEMTRAIN_RETURN_IF_ERROR(file->read(d.name, d.shape, DType::kF32, d.read.runs, t.raw()));
    out.params.push_back({d.name.substr(std::strlen("params/")), std::move(t)});
  }
  MEMTRAIN_RETURN_IF_ERROR(file->close());
  return out;
}

absl::Status write_weights_checkpoint(const Config& cfg, const std::vector<checkpoint::NamedTensor>& params,
                                      const std::string& extra_json) {
  const std::string dir = checkpoint_dir(cfg);
  if (!checkpoint_steps(dir).empty())
    return absl::FailedPreconditionError(absl::StrCat(dir, ": already holds checkpoints; write into a fresh directory"));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  nlohmann::json manifest = {{"format", kFormat}, {"step", 0}, {"optimizer", kNoOptimizer},
                             {"optimizer_steps", 0}, {"config", dump_config(cfg)}};
  const nlohmann::json extra = nlohmann::json::parse(extra_json.empty() ? "{}" : extra_json, nullptr, false);
  MEMTRAIN_CHECK_MSG(extra.is_object(), "write_weights_checkpoint: extra is a JSON object");
  manifest.update(extra);
  const std::string tmp = (fs::path(dir) / file_name(0)).string() + ".tmp";
  std::vector<checkpoint::StoredShape> shapes;
  for (const checkpoint::NamedTensor& t : params) shapes.push_back({t.tensor.shape(), DType::kF32});
  MEMTRAIN_RETURN_IF_ERROR(check_room(dir, (fs::path(dir) / file_name(0)).string(), shapes, manifest.dump()));
  absl::Status written;
  {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5File> file, Hdf5File::create(tmp, MPI_COMM_NULL));
    for (const checkpoint::NamedTensor& t : params) {
      const std::vector<GlobalRun> runs = {{0, t.tensor.numel()}};
      if (written.ok()) written = file->write("params/" + t.name, t.tensor.shape(), DType::kF32, runs, t.tensor.raw());
    }
    if (written.ok()) written = file->set_attribute("manifest", manifest.dump());
    const absl::Status closed = file->close();
    if (written.ok()) written = closed;
  }
  return publish(dir, 0, cfg.train.keep_checkpoints, written);
}

}  // namespace memtrain::trainer
