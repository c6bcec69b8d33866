// Mesh shape resolution, rank placement and the per-axis communicator split.
#include "parallel/device_mesh.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::parallel {

const char* axis_name(Axis axis) {
  switch (axis) {
    case Axis::kTp: return "tp";
    case Axis::kCp: return "cp";
    case Axis::kDp: return "dp";
    case Axis::kPp: return "pp";
  }
  return "?";
}

namespace {
// MeshShape and MeshCoord name their fields alike: one accessor by axis serves both.
template <class T>
int field(const T& t, Axis a) {
  switch (a) {
    case Axis::kTp: return t.tp;
    case Axis::kCp: return t.cp;
    case Axis::kDp: return t.dp;
    case Axis::kPp: return t.pp;
  }
  return 0;
}
}  // namespace

int MeshShape::size(Axis a) const { return field(*this, a); }
int MeshCoord::get(Axis a) const { return field(*this, a); }

int mesh_rank(const MeshShape& s, const MeshCoord& c) { return ((c.pp * s.dp + c.dp) * s.cp + c.cp) * s.tp + c.tp; }

MeshCoord mesh_coord(const MeshShape& s, int rank) {
  MeshCoord c;
  c.tp = rank % s.tp;
  rank /= s.tp;
  c.cp = rank % s.cp;
  rank /= s.cp;
  c.dp = rank % s.dp;
  c.pp = rank / s.dp;
  return c;
}

absl::StatusOr<MeshShape> resolve_mesh_shape(const ParallelConfig& cfg, int world_size) {
  MEMTRAIN_RETURN_IF_ERROR(cfg.validate());
  const int64_t rest = cfg.tp * cfg.pp * cfg.cp;
  int64_t dp = cfg.dp;
  if (dp == -1) {
    if (world_size % rest != 0)
      return config_error("parallel.dp",
                          absl::StrCat("-1 (the rest) needs parallel.tp * parallel.pp * parallel.cp = ", cfg.tp, " * ",
                                       cfg.pp, " * ", cfg.cp, " = ", rest, " to divide the world size ", world_size));
    dp = world_size / rest;
  }
  if (dp * rest != world_size)
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel.dp * parallel.tp * parallel.pp * parallel.cp = ", dp, " * ", cfg.tp, " * ", cfg.pp, " * ", cfg.cp,
        " = ", dp * rest, " must equal the world size ", world_size, " (or set parallel.dp = -1)"));
  MeshShape s;
  s.tp = static_cast<int>(cfg.tp);
  s.cp = static_cast<int>(cfg.cp);
  s.dp = static_cast<int>(dp);
  s.pp = static_cast<int>(cfg.pp);
  return s;
}

absl::StatusOr<DeviceMesh> DeviceMesh::create(Communicator& world, const ParallelConfig& cfg) {
  DeviceMesh mesh;
  MEMTRAIN_ASSIGN_OR_RETURN(mesh.shape_, resolve_mesh_shape(cfg, world.size()));
  mesh.coord_ = mesh_coord(mesh.shape_, world.rank());
  for (Axis a : kAllAxes) {
    // Color: this rank's placement with axis a's coordinate zeroed, so the group is every rank that differs
    // only along a; key: the coordinate along a.
    MeshCoord base = mesh.coord_;
    switch (a) {
      case Axis::kTp: base.tp = 0; break;
      case Axis::kCp: base.cp = 0; break;
      case Axis::kDp: base.dp = 0; break;
      case Axis::kPp: base.pp = 0; break;
    }
    MEMTRAIN_ASSIGN_OR_RETURN(auto comm,
                              world.split(mesh_rank(mesh.shape_, base), mesh.coord_.get(a), axis_name(a)));
    comm->set_timeout_s(cfg.timeout_s);
    mesh.comms_[static_cast<int>(a)] = std::move(comm);
  }
  return mesh;
}

}  // namespace memtrain::parallel
