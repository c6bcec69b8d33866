#include "trainer/checkpoint_file.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/fault_injection.h"
#include "core/file_io.h"
#include "core/status.h"
#include "model/model.h"

namespace memtrain::trainer {
namespace {

using checkpoint::GlobalRun;
using checkpoint::Hdf5File;
namespace fs = std::filesystem;

// After the step's file was written to its .tmp name with status `written`: on success renames it into place, points
// `latest` at it and removes all but the newest `keep`; on any failure removes the .tmp and leaves the previous
// checkpoints as they were.
absl::Status publish(const std::string& dir, int64_t step, int64_t keep, absl::Status written) {
  const std::string path = (fs::path(dir) / checkpoint_file_name(step)).string(), tmp = path + ".tmp";
  if (written.ok()) written = commit_file(tmp, path);
  if (written.ok()) written = write_file_atomically((fs::path(dir) / "latest").string(), {checkpoint_file_name(step) + "\n"});
  std::error_code ec;
  if (!written.ok()) {
    fs::remove(tmp, ec);
    return written;
  }
  const std::vector<int64_t> steps = checkpoint_steps(dir);
  for (size_t k = static_cast<size_t>(keep); k < steps.size(); ++k) fs::remove(fs::path(dir) / checkpoint_file_name(steps[k]), ec);
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

std::string checkpoint_dir(const Config& cfg) { return (fs::path(cfg.output.dir) / "checkpoints").string(); }
std::string checkpoint_file_name(int64_t step) { return absl::StrFormat("step_%08d.h5", step); }

std::vector<int64_t> checkpoint_steps(const std::string& dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const std::string n = f.path().filename().string();
    long long step = 0;
    char tail = 0;
    if (std::sscanf(n.c_str(), "step_%lld.h%c", &step, &tail) == 2 && n == checkpoint_file_name(step)) steps.push_back(step);
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

absl::Status write_checkpoint(const std::string& dir, int64_t step, int64_t keep, const std::vector<Dataset>& all,
                              const std::string& manifest, MPI_Comm comm, bool lead, const AgreeFn& agree) {
  const std::string path = (fs::path(dir) / checkpoint_file_name(step)).string(), tmp = path + ".tmp";
  absl::Status ready;
  if (lead) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) ready = absl::UnavailableError(absl::StrCat(dir, ": cannot create: ", ec.message()));
    for (const auto& f : fs::directory_iterator(dir, ec)) {  // saves a kill cut short
      if (f.path().extension() == ".tmp") fs::remove(f.path(), ec);
    }
    std::vector<checkpoint::StoredShape> shapes;
    for (const Dataset& d : all) shapes.push_back({d.shape, d.dtype});
    if (ready.ok()) ready = check_room(dir, path, shapes, manifest);
  }
  MEMTRAIN_RETURN_IF_ERROR(agree(ready));
  absl::Status written;
  {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5File> file, Hdf5File::create(tmp, comm));
    // Every rank goes through every dataset (the calls are collective), keeping its first error.
    for (const Dataset& d : all) {
      const absl::Status w = file->write(d.name, d.shape, d.dtype, d.write.runs, d.write.data);
      if (written.ok()) written = w;
    }
    const absl::Status m = file->set_attribute("manifest", manifest);
    if (written.ok()) written = m;
    const absl::Status c = file->close();
    if (written.ok()) written = c;
  }
  if (!written.ok()) written = with_free_space(written, dir);
  MEMTRAIN_FAULT_POINT("checkpoint.after_write");
  absl::Status committed = agree(written);
  if (lead) committed = publish(dir, step, keep, committed);
  return agree(committed);
}

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

absl::StatusOr<CheckpointWeights> read_checkpoint_weights(const std::string& path) {
  CheckpointWeights out;
  MEMTRAIN_ASSIGN_OR_RETURN(out.path, resolve_checkpoint(path));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5File> file, Hdf5File::open(out.path, MPI_COMM_NULL));
  MEMTRAIN_ASSIGN_OR_RETURN(nlohmann::json manifest, read_manifest(*file));
  out.manifest_json = manifest.dump();
  MEMTRAIN_ASSIGN_OR_RETURN(out.config, parse_config(manifest["config"].get<std::string>(),
                                                     out.path + " (manifest config)", {}, /*validate=*/false));
  MEMTRAIN_RETURN_IF_ERROR(out.config.model.validate());
  if (out.config.lora.enabled())
    return absl::InvalidArgumentError(absl::StrCat(out.path, ": a LoRA run's checkpoint holds adapters, not a model; "
                                                   "merge its output.dir/adapter with convert --merge-adapter"));
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
  nlohmann::json manifest = {{"format", kCheckpointFormat}, {"step", 0}, {"optimizer", kNoOptimizer},
                             {"optimizer_steps", 0}, {"config", dump_config(cfg)}};
  const nlohmann::json extra = nlohmann::json::parse(extra_json.empty() ? "{}" : extra_json, nullptr, false);
  MEMTRAIN_CHECK_MSG(extra.is_object(), "write_weights_checkpoint: extra is a JSON object");
  manifest.update(extra);
  std::vector<Dataset> all;
  for (const checkpoint::NamedTensor& t : params) {
    const Piece whole{{{0, t.tensor.numel()}}, t.tensor.raw()};
    all.push_back({"params/" + t.name, t.tensor.shape(), DType::kF32, whole, whole});
  }
  return write_checkpoint(dir, 0, cfg.train.keep_checkpoints, all, manifest.dump(), MPI_COMM_NULL, /*lead=*/true,
                          [](absl::Status s) { return s; });
}

}  // namespace memtrain::trainer
