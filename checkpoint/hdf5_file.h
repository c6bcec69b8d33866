// One HDF5 file that the ranks of an MPI communicator write and read together (parallel HDF5 over MPI-IO), or one
// process alone. A dataset is a global tensor under its own name (its full shape, little-endian), chunked with
// HDF5's Fletcher-32 filter, so that a flipped byte fails the read with an error naming the dataset. Each rank
// writes or reads only its own elements, given as runs of the tensor's row-major order; the calls are collective
// (every rank calls them in the same order, with no runs when it holds nothing).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace memtrain::checkpoint {

// Elements [global, global + n) of a tensor's row-major order.
struct GlobalRun {
  int64_t global = 0;
  int64_t n = 0;
};

struct StoredShape {
  Shape shape;
  DType dtype = DType::kF32;
};
// An upper bound of the size of a file holding `datasets` and root attributes of `attribute_bytes`: the chunks
// (allocated whole), each dataset's object header and chunk index, each chunk's checksum, the superblock. A save
// checks that the disk has this much room before it starts (HDF5 cannot recover from a write that fails midway).
int64_t file_size_bound(std::span<const StoredShape> datasets, int64_t attribute_bytes);

class Hdf5File {
 public:
  // comm: the writers, or MPI_COMM_NULL for one process (no MPI needed). create truncates an existing file.
  static absl::StatusOr<std::unique_ptr<Hdf5File>> create(const std::string& path, MPI_Comm comm);
  static absl::StatusOr<std::unique_ptr<Hdf5File>> open(const std::string& path, MPI_Comm comm);
  ~Hdf5File();
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;

  // Creates dataset `name` ("/" separates groups, created as needed) of `shape` (1-D or 2-D) and writes this rank's
  // runs (ascending, inside the tensor) from `data`, packed in run order.
  absl::Status write(const std::string& name, const Shape& shape, DType dtype, std::span<const GlobalRun> runs,
                     const void* data);
  // Reads this rank's runs of dataset `name` into `data`; fails naming the dataset when it is missing, when its
  // shape or dtype differ from `shape` and `dtype`, or when a checksum does not match.
  absl::Status read(const std::string& name, const Shape& shape, DType dtype, std::span<const GlobalRun> runs,
                    void* data);
  bool has(const std::string& name) const;
  struct DatasetInfo {
    Shape shape;
    DType dtype = DType::kF32;
  };
  // The stored shape and dtype of dataset `name`; NotFound when it is missing, DataLoss for a type memtrain does
  // not write.
  absl::StatusOr<DatasetInfo> info(const std::string& name) const;
  // The names of the datasets directly inside `group` ("params"), sorted; empty when the group is missing.
  std::vector<std::string> datasets_in(const std::string& group) const;
  // A string attribute of the file's root group (the manifest and the config live there).
  absl::Status set_attribute(const std::string& key, const std::string& value);
  absl::StatusOr<std::string> attribute(const std::string& key) const;
  // Collective: flushes and closes (the destructor closes too, without reporting).
  absl::Status close();

  const std::string& path() const { return path_; }

 private:
  Hdf5File(std::string path, int64_t file, bool parallel)
      : path_(std::move(path)), file_(file), parallel_(parallel) {}
  absl::Status error(const std::string& what, const std::string& name) const;

  std::string path_;
  int64_t file_ = -1;  // hid_t
  bool parallel_;      // MPI-IO: transfers are collective
};

}  // namespace memtrain::checkpoint
