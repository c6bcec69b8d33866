// DeviceMesh: the world split into named axes (dp, tp, pp, cp) with one communicator per axis. Placement:
// tp innermost (neighbouring ranks, same node), then cp, then dp, pp outermost - Megatron's order.
#pragma once

#include <array>
#include <memory>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/parallel_config.h"

namespace memtrain::parallel {

enum class Axis { kTp = 0, kCp = 1, kDp = 2, kPp = 3 };  // innermost first
inline constexpr std::array<Axis, 4> kAllAxes = {Axis::kTp, Axis::kCp, Axis::kDp, Axis::kPp};
const char* axis_name(Axis axis);  // "tp", "cp", "dp", "pp"

// Sizes per axis, every one >= 1 (dp already resolved).
struct MeshShape {
  int tp = 1, cp = 1, dp = 1, pp = 1;
  int size(Axis a) const;
  int product() const { return tp * cp * dp * pp; }
};
struct MeshCoord {
  int tp = 0, cp = 0, dp = 0, pp = 0;
  int get(Axis a) const;
};

// rank = ((pp * dp_size + dp) * cp_size + cp) * tp_size + tp, i.e. tp varies fastest.
int mesh_rank(const MeshShape& shape, const MeshCoord& coord);
MeshCoord mesh_coord(const MeshShape& shape, int rank);
// Resolves dp = -1 and checks dp * tp * pp * cp == world_size; errors name the parallel.* keys and the numbers.
absl::StatusOr<MeshShape> resolve_mesh_shape(const ParallelConfig& cfg, int world_size);

class DeviceMesh {
 public:
  // Collective over `world`: validates cfg, then splits one communicator per axis (named "tp", "cp", "dp", "pp";
  // the ranks of axis a's communicator share every other coordinate, ordered by their coordinate on a, so
  // comm(a).rank() == coord().get(a)). Each inherits cfg.timeout_s. `world` must outlive the mesh only for the
  // duration of create (the axis communicators are independent of it).
  static absl::StatusOr<DeviceMesh> create(Communicator& world, const ParallelConfig& cfg);

  const MeshShape& shape() const { return shape_; }
  const MeshCoord& coord() const { return coord_; }
  int size(Axis a) const { return shape_.size(a); }
  // Every axis exists, also at size 1, so no code asks "is TP on?".
  Communicator& comm(Axis a) { return *comms_[static_cast<int>(a)]; }

 private:
  MeshShape shape_;
  MeshCoord coord_;
  std::array<std::unique_ptr<Communicator>, 4> comms_;
};

}  // namespace memtrain::parallel
