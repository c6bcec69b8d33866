// DeviceMesh and the bootstrap under mpirun: sub-communicator membership for several (dp, tp, pp, cp) shapes,
// the world-size check, and the launcher environment.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <vector>

#include "parallel/device_mesh.h"
#include "tests/mpi/mpi_test_env.h"

namespace memtrain::parallel {
namespace {

using testing::world;

ParallelConfig config(int64_t dp, int64_t tp, int64_t pp, int64_t cp) {
  ParallelConfig c;
  c.dp = dp;
  c.tp = tp;
  c.pp = pp;
  c.cp = cp;
  c.timeout_s = 10;
  return c;
}

// The expected members of axis a's group of `rank`, computed by brute force from the placement rule written out
// independently of mesh_rank: rank = tp + T*(cp + C*(dp + D*pp)).
std::vector<int> expected_members(int tp, int cp, int dp, int pp, Axis a, int rank) {
  auto decode = [&](int x) { return std::array<int, 4>{x % tp, x / tp % cp, x / (tp * cp) % dp, x / (tp * cp * dp)}; };
  const auto me = decode(rank);
  std::vector<int> out;
  for (int x = 0; x < tp * cp * dp * pp; ++x) {
    const auto c = decode(x);
    bool same = true;
    for (int i = 0; i < 4; ++i)
      if (i != static_cast<int>(a) && c[i] != me[i]) same = false;
    if (same) out.push_back(x);  // ascending x == ascending coordinate along a
  }
  return out;
}

TEST(DeviceMesh, MembershipForEveryShapeOfThisWorld) {
  Communicator& w = world().comm();
  const int n = w.size();
  // (dp, tp, pp, cp) shapes; those whose product is not the world size are skipped at this rank count.
  const std::vector<std::array<int, 4>> shapes = {
      {n, 1, 1, 1}, {1, n, 1, 1}, {1, 1, n, 1}, {1, 1, 1, n}, {2, 2, 2, 1}, {2, 2, 1, 2},
      {1, 2, 2, 2}, {2, 1, 2, 2}, {4, 2, 1, 1}, {2, 4, 1, 1}, {1, 2, 4, 1}, {2, 2, 1, 1}, {1, 2, 1, 2}};
  int tested = 0;
  for (const auto& [dp, tp, pp, cp] : shapes) {
    if (dp * tp * pp * cp != n) continue;
    ++tested;
    auto mesh = DeviceMesh::create(w, config(dp, tp, pp, cp));
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    SCOPED_TRACE(::testing::Message() << "dp=" << dp << " tp=" << tp << " pp=" << pp << " cp=" << cp);
    for (Axis a : kAllAxes) {
      Communicator& ac = mesh->comm(a);
      const std::vector<int> want = expected_members(tp, cp, dp, pp, a, w.rank());
      EXPECT_EQ(ac.world_ranks(), want) << axis_name(a);
      EXPECT_EQ(ac.size(), mesh->size(a));
      EXPECT_EQ(ac.rank(), mesh->coord().get(a));
      EXPECT_EQ(ac.name(), axis_name(a));
      // The communicator really connects those ranks: the sum of world ranks over the group.
      int32_t mine = w.rank(), sum = 0, want_sum = 0;
      for (int x : want) want_sum += x;
      ASSERT_TRUE(ac.all_reduce(&mine, &sum, 1, DType::kI32, ReduceOp::kSum).ok());
      EXPECT_EQ(sum, want_sum) << axis_name(a);
    }
    EXPECT_EQ(mesh_rank(mesh->shape(), mesh->coord()), w.rank());
  }
  EXPECT_GE(tested, 2);
}

TEST(DeviceMesh, DpMinusOneTakesTheRest) {
  Communicator& w = world().comm();
  auto mesh = DeviceMesh::create(w, config(-1, 2, 1, 1));
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  EXPECT_EQ(mesh->size(Axis::kDp), w.size() / 2);
  EXPECT_EQ(mesh->size(Axis::kTp), 2);
}

TEST(DeviceMesh, ProductNotWorldSizeNamesKeysAndNumbers) {
  Communicator& w = world().comm();
  auto mesh = DeviceMesh::create(w, config(3, 1, 1, 1));
  ASSERT_FALSE(mesh.ok());
  const std::string msg(mesh.status().message());
  EXPECT_EQ(mesh.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* part : {"parallel.dp", "parallel.tp", "parallel.pp", "parallel.cp", "= 3 must equal"})
    EXPECT_NE(msg.find(part), std::string::npos) << part << " not in: " << msg;
  EXPECT_NE(msg.find(absl::StrCat("world size ", w.size())), std::string::npos) << msg;

  auto rest = DeviceMesh::create(w, config(-1, 3, 1, 1));  // 3 divides none of 2, 4, 8
  ASSERT_FALSE(rest.ok());
  EXPECT_NE(rest.status().message().find("parallel.dp: -1"), std::string::npos) << rest.status();
}

TEST(ParallelConfig, ValidateNamesTheKey) {
  EXPECT_TRUE(ParallelConfig{}.validate().ok());
  EXPECT_NE(config(0, 1, 1, 1).validate().message().find("parallel.dp"), std::string::npos);
  EXPECT_NE(config(1, 0, 1, 1).validate().message().find("parallel.tp"), std::string::npos);
  EXPECT_NE(config(1, 1, -2, 1).validate().message().find("parallel.pp"), std::string::npos);
  EXPECT_NE(config(1, 1, 1, 0).validate().message().find("parallel.cp"), std::string::npos);
  ParallelConfig c;
  c.timeout_s = 0;
  EXPECT_NE(c.validate().message().find("parallel.timeout_s"), std::string::npos);
}

TEST(Bootstrap, LaunchInfoMatchesMpirun) {
  const LaunchInfo& l = world().launch();
  EXPECT_EQ(l.launcher, "openmpi");
  EXPECT_EQ(l.rank, world().comm().rank());
  EXPECT_EQ(l.world_size, world().comm().size());
  EXPECT_EQ(l.local_size, l.world_size);  // one machine
  EXPECT_EQ(l.node, 0);
  EXPECT_EQ(l.local_rank, std::atoi(std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")));
  EXPECT_EQ(world().comm().world_ranks()[world().rank()], world().rank());
}

TEST(Bootstrap, DetectsSlurmAndNoLauncher) {
  std::map<std::string, std::string> env = {{"SLURM_PROCID", "5"},  {"SLURM_NTASKS", "8"},
                                            {"SLURM_LOCALID", "1"}, {"SLURM_NODEID", "2"},
                                            {"SLURM_NTASKS_PER_NODE", "2"}};
  auto get = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto l = detect_launch(get);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->launcher, "slurm");
  EXPECT_EQ(l->rank, 5);
  EXPECT_EQ(l->world_size, 8);
  EXPECT_EQ(l->local_rank, 1);
  EXPECT_EQ(l->node, 2);
  EXPECT_EQ(l->local_size, 2);
  env["SLURM_PROCID"] = "9";
  EXPECT_FALSE(detect_launch(get).ok());
  env["SLURM_PROCID"] = "x";
  EXPECT_NE(detect_launch(get).status().message().find("SLURM_PROCID"), std::string::npos);
  env.clear();
  auto none = detect_launch(get);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->launcher, "none");
  EXPECT_EQ(none->world_size, 1);
}

}  // namespace
}  // namespace memtrain::parallel
