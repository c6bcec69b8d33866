// The main() of the benchmarks that run under mpirun: BENCH CONFIG [--steps N] [--set section.key=value ...],
// train.threads defaulting to 1 per rank; the world is started and `body` runs on it (an error aborts the job).
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "parallel/world.h"
#include "trainer/config.h"

namespace memtrain::bench {

using MeshBench = std::function<absl::Status(parallel::World& world, const trainer::Config& cfg, int steps)>;

// thread_multiple: MPI_THREAD_MULTIPLE (benchmarks of background checkpoint writes and snapshot encoding).
inline int mesh_bench_main(int argc, char** argv, const char* name, const MeshBench& body,
                           bool thread_multiple = false) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CONFIG [--steps N] [--set section.key=value ...]\n", name);
    return 2;
  }
  std::vector<std::string> sets = {"train.threads=1"};
  int steps = 5;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--set") {
      sets.push_back(argv[i + 1]);
    } else if (flag == "--steps" && absl::SimpleAtoi(argv[i + 1], &steps) && steps > 0) {
    } else {
      std::fprintf(stderr, "bad argument %s\n", flag.c_str());
      return 2;
    }
  }
  auto cfg = trainer::load_config(argv[1], sets);
  if (!cfg.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(cfg.status().message()).c_str());
    return 2;
  }
  auto world = parallel::World::init(&argc, &argv, {cfg->parallel.timeout_s, thread_multiple});
  if (!world.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(world.status().message()).c_str());
    return 1;
  }
  const absl::Status s = body(**world, *cfg, steps);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    (*world)->abort(1);
  }
  return 0;
}

}  // namespace memtrain::bench
