#include "checkpoint/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::checkpoint {
namespace {

// Closes an HDF5 handle with its kind's close call when it leaves scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// Rows per chunk of a dataset of `shape`: chunks of about 1M elements (whole rows; HDF5 checksums and writes a
// chunk at a time), the rows split evenly among them, since HDF5 allocates the last chunk whole too.
int64_t chunk_rows(const Shape& shape) {
  constexpr int64_t kChunk = 1 << 20;
  const int64_t rows = shape[0], cols = shape.size() == 2 ? std::max<int64_t>(1, shape[1]) : 1;
  const int64_t most = std::clamp<int64_t>(kChunk / cols, 1, std::max<int64_t>(rows, 1));
  const int64_t chunks = (rows + most - 1) / most;
  return std::max<int64_t>(1, (rows + chunks - 1) / chunks);
}

// HDF5 prints its error stack to stderr by default; errors here become Status values instead.
void quiet_errors() {
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

hid_t file_type(DType dt) {
  switch (dt) {
    case DType::kF32: return H5T_IEEE_F32LE;
    case DType::kI32: return H5T_STD_I32LE;
    case DType::kU8: return H5T_STD_U8LE;
    case DType::kI8: return H5T_STD_I8LE;
    case DType::kU16: return H5T_STD_U16LE;
    default: return -1;
  }
}
hid_t memory_type(DType dt) {
  switch (dt) {
    case DType::kF32: return H5T_NATIVE_FLOAT;
    case DType::kI32: return H5T_NATIVE_INT32;
    case DType::kU8: return H5T_NATIVE_UINT8;
    case DType::kI8: return H5T_NATIVE_INT8;
    case DType::kU16: return H5T_NATIVE_UINT16;
    default: return -1;
  }
}

// The file-access properties: MPI-IO over comm, or the default (POSIX) driver for one process.
Handle access_properties(MPI_Comm comm) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (comm != MPI_COMM_NULL) H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL);
  return fapl;
}

// Collective transfers with MPI-IO (needed to write filtered datasets in parallel), the default otherwise.
Handle transfer_properties(bool parallel) {
  Handle dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  if (parallel) H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE);
  return dxpl;
}


// A dataset's dimensions as a 2-D view: rows of the last dimension (a 1-D tensor is one row).
std::pair<int64_t, int64_t> rows_and_cols(const Shape& shape) {
  const int64_t cols = shape.empty() ? 1 : shape.back();
  return {cols == 0 ? 0 : shape_numel(shape) / cols, cols};
}

// This rank's runs as a selection of the file space: each run splits into at most three rectangles (a partial
// row, whole rows, a partial row), and rectangles over consecutive rows with the same columns merge.
absl::Status select_runs(hid_t space, const Shape& shape, std::span<const GlobalRun> runs) {
  H5Sselect_none(space);
  const auto [rows, cols] = rows_and_cols(shape);
  struct Rect {
    int64_t row, rows, col, cols;
  };
  std::vector<Rect> rects;
  auto add = [&](int64_t row, int64_t nrows, int64_t col, int64_t ncols) {
    if (nrows == 0 || ncols == 0) return;
    if (!rects.empty()) {
      Rect& last = rects.back();
      if (last.col == col && last.cols == ncols && last.row + last.rows == row) {
        last.rows += nrows;
        return;
      }
    }
    rects.push_back({row, nrows, col, ncols});
  };
  int64_t end = 0;
  for (const GlobalRun& r : runs) {
    if (r.n <= 0) continue;
    if (r.global < end || r.global + r.n > rows * cols)
      return absl::InvalidArgumentError(absl::StrCat("run [", r.global, ", ", r.global + r.n,
                                                     ") out of order or outside the tensor"));
    end = r.global + r.n;
    int64_t at = r.global, left = r.n;
    const int64_t head = std::min(left, (cols - at % cols) % cols);  // up to the end of a partial first row
    add(at / cols, 1, at % cols, head);
    at += head;
    left -= head;
    add(at / cols, left / cols, 0, cols);
    at += left / cols * cols;
    add(at / cols, 1, 0, left % cols);
  }
  for (const Rect& r : rects) {
    const hsize_t start2[2] = {static_cast<hsize_t>(r.row), static_cast<hsize_t>(r.col)};
    const hsize_t count2[2] = {static_cast<hsize_t>(r.rows), static_cast<hsize_t>(r.cols)};
    const hsize_t start1[1] = {static_cast<hsize_t>(r.col)};
    const hsize_t count1[1] = {static_cast<hsize_t>(r.cols)};
    const bool two = shape.size() == 2;
    if (H5Sselect_hyperslab(space, H5S_SELECT_OR, two ? start2 : start1, nullptr, two ? count2 : count1, nullptr) < 0)
      return absl::InternalError("could not select a hyperslab");
  }
  return absl::OkStatus();
}

// Moves this rank's runs between `data` (packed in run order) and dataset `dset` whose file space is `space`:
// false when HDF5 fails the transfer (a write error, or a checksum that does not match on a read).
absl::StatusOr<bool> transfer(hid_t dset, hid_t space, const Shape& shape, DType dtype,
                              std::span<const GlobalRun> runs, void* data, bool write, bool parallel) {
  MEMTRAIN_RETURN_IF_ERROR(select_runs(space, shape, runs));
  hsize_t n = 0;
  for (const GlobalRun& r : runs) n += static_cast<hsize_t>(std::max<int64_t>(0, r.n));
  Handle mem(H5Screate_simple(1, &n, nullptr), H5Sclose);
  if (n == 0) H5Sselect_none(mem.get());
  Handle dxpl = transfer_properties(parallel);
  const herr_t rc = write ? H5Dwrite(dset, memory_type(dtype), mem.get(), space, dxpl.get(), data)
                          : H5Dread(dset, memory_type(dtype), mem.get(), space, dxpl.get(), data);
  return rc >= 0;
}

}  // namespace

int64_t file_size_bound(std::span<const StoredShape> datasets, int64_t attribute_bytes) {
  int64_t bytes = 2 * attribute_bytes + (64 << 10);  // superblock, root group, heaps
  for (const StoredShape& d : datasets) {
    const int64_t rows = d.shape.empty() ? 0 : d.shape[0], per_chunk = chunk_rows(d.shape);
    const int64_t chunks = rows == 0 ? 0 : (rows + per_chunk - 1) / per_chunk;
    // Whole chunks are allocated, each with its checksum and index entry; measured about 3 KiB of object header,
    // B-tree node and heap entries per small dataset.
    bytes += chunks * per_chunk * (shape_numel(d.shape) / std::max<int64_t>(rows, 1)) *
                 static_cast<int64_t>(dtype_size(d.dtype)) + 64 * chunks + 4096;
  }
  return bytes;
}

absl::Status Hdf5File::error(const std::string& what, const std::string& name) const {
  return absl::DataLossError(absl::StrCat(path_, ": ", what, name.empty() ? "" : " dataset '" + name + "'"));
}

absl::StatusOr<std::unique_ptr<Hdf5File>> Hdf5File::create(const std::string& path, MPI_Comm comm) {
  quiet_errors();
  Handle fapl = access_properties(comm);
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (file < 0) return absl::UnavailableError(absl::StrCat(path, ": could not create the HDF5 file"));
  return std::unique_ptr<Hdf5File>(new Hdf5File(path, file, comm != MPI_COMM_NULL));
}

absl::StatusOr<std::unique_ptr<Hdf5File>> Hdf5File::open(const std::string& path, MPI_Comm comm) {
  quiet_errors();
  Handle fapl = access_properties(comm);
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (file < 0) return absl::DataLossError(absl::StrCat(path, ": not a readable HDF5 file"));
  return std::unique_ptr<Hdf5File>(new Hdf5File(path, file, comm != MPI_COMM_NULL));
}

Hdf5File::~Hdf5File() {
  if (file_ >= 0) H5Fclose(file_);
}

absl::Status Hdf5File::close() {
  if (file_ < 0) return absl::OkStatus();
  const herr_t rc = H5Fclose(file_);
  file_ = -1;
  if (rc < 0) return absl::UnavailableError(absl::StrCat(path_, ": could not close (flush) the HDF5 file"));
  return absl::OkStatus();
}

absl::Status Hdf5File::write(const std::string& name, const Shape& shape, DType dtype,
                             std::span<const GlobalRun> runs, const void* data) {
  if (shape.empty() || shape.size() > 2 || shape_numel(shape) == 0)
    return absl::InvalidArgumentError(absl::StrCat(name, ": only non-empty 1-D and 2-D tensors are stored"));
  if (file_type(dtype) < 0) return absl::InvalidArgumentError(absl::StrCat(name, ": unsupported dtype"));
  std::vector<hsize_t> dims(shape.begin(), shape.end()), chunk = dims;
  chunk[0] = static_cast<hsize_t>(chunk_rows(shape));
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
  H5Pset_fletcher32(dcpl.get());
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dset(H5Dcreate2(file_, name.c_str(), file_type(dtype), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
              H5Dclose);
  if (!dset.ok()) return error("could not create", name);
  MEMTRAIN_ASSIGN_OR_RETURN(const bool written, transfer(dset.get(), space.get(), shape, dtype, runs,
                                                         const_cast<void*>(data), /*write=*/true, parallel_));
  if (!written) return error("could not write", name);
  return absl::OkStatus();
}

absl::Status Hdf5File::read(const std::string& name, const Shape& shape, DType dtype,
                            std::span<const GlobalRun> runs, void* data) {
  if (!has(name)) return error("missing", name);
  Handle dset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle space(H5Dget_space(dset.get()), H5Sclose);
  Handle type(H5Dget_type(dset.get()), H5Tclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(std::max(rank, 0));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  if (Shape(dims.begin(), dims.end()) != shape || file_type(dtype) < 0 ||
      H5Tequal(type.get(), file_type(dtype)) <= 0) {
    return error(absl::StrCat("shape or dtype differ from the model's (", shape.size(), "-D ",
                              std::string(dtype_name(dtype)), " expected) in"),
                 name);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const bool read, transfer(dset.get(), space.get(), shape, dtype, runs, data,
                                                      /*write=*/false, parallel_));
  if (!read) return error("checksum mismatch or unreadable data in", name);
  return absl::OkStatus();
}

bool Hdf5File::has(const std::string& name) const {
  // Every group on the way must exist before H5Lexists may be asked about the next link.
  for (size_t slash = name.find('/', 1); ; slash = name.find('/', slash + 1)) {
    const std::string prefix = name.substr(0, slash);
    if (H5Lexists(file_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) return true;
  }
}

absl::StatusOr<Hdf5File::DatasetInfo> Hdf5File::info(const std::string& name) const {
  if (!has(name)) return absl::NotFoundError(absl::StrCat(path_, ": no dataset '", name, "'"));
  Handle dset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle space(H5Dget_space(dset.get()), H5Sclose);
  Handle type(H5Dget_type(dset.get()), H5Tclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (!dset.ok() || rank < 0) return error("unreadable", name);
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  for (DType dt : {DType::kF32, DType::kI32, DType::kU8, DType::kI8, DType::kU16}) {
    if (H5Tequal(type.get(), file_type(dt)) > 0) return DatasetInfo{Shape(dims.begin(), dims.end()), dt};
  }
  return error("unsupported element type in", name);
}

std::vector<std::string> Hdf5File::datasets_in(const std::string& group) const {
  std::vector<std::string> names;
  if (!has(group)) return names;
  Handle g(H5Gopen2(file_, group.c_str(), H5P_DEFAULT), H5Gclose);
  H5G_info_t gi;
  if (!g.ok() || H5Gget_info(g.get(), &gi) < 0) return names;
  for (hsize_t i = 0; i < gi.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n <= 0) continue;
    std::string name(static_cast<size_t>(n) + 1, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(n));
    H5O_info_t oi;
    const std::string path = group + "/" + name;
    if (H5Oget_info_by_name2(file_, path.c_str(), &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 && oi.type == H5O_TYPE_DATASET)
      names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status Hdf5File::set_attribute(const std::string& key, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), value.size() + 1);  // with its terminating NUL
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(file_, key.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), value.c_str()) < 0)
    return error(absl::StrCat("could not write attribute '", key, "'"), "");
  return absl::OkStatus();
}

absl::StatusOr<std::string> Hdf5File::attribute(const std::string& key) const {
  if (H5Aexists(file_, key.c_str()) <= 0) return error(absl::StrCat("missing attribute '", key, "'"), "");
  Handle attr(H5Aopen(file_, key.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  std::string value(H5Tget_size(type.get()), '\0');
  if (H5Aread(attr.get(), type.get(), value.data()) < 0)
    return error(absl::StrCat("could not read attribute '", key, "'"), "");
  value.resize(std::min(value.size(), value.find('\0')));
  return value;
}

}  // namespace memtrain::checkpoint
