// The largest model trainable under a memory budget per process, with and without the planner
// (memory.activations = auto, with offload.ssd_path): GPT-2-style blocks of width 512 (8 heads), batch 8 x 256,
// AdamW, the number of layers the size knob. For each budget: the most layers whose keep plan fits, the most the
// planner fits and its choice (with its predicted slowdown); then, for the budgets given to --measure, that largest
// planned model trained a few steps under its plan and the same model under keep without a budget: measured step
// times, their ratio, and the measured peak (the sum of the category peaks) against the budget.
// Usage: bench/memory_budget [--dir SSD_DIR] [--steps N] [--measure GIB ...] [--budgets GIB ...] [--set KEY=VALUE ...]
// (--set: config overrides for every run, e.g. zero.stage=3, where the planner may also put the parameter shard on
// the SSD).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/run_figures.h"
#include "trainer/activation_planner.h"
#include "trainer/config.h"
#include "trainer/plan.h"
#include "trainer/train_loop.h"

using namespace memtrain;

namespace {

constexpr char kToml[] =
    "[model]\narch = \"gpt2\"\nvocab_size = 8192\nn_head = 8\nn_embd = 512\nblock_size = 256\n"
    "[data]\ntext = [\"/usr/share/games/fortunes\"]\n"
    "[train]\nbatch_size = 8\nlog_interval = 1\neval_interval = 0\n"
    "[output]\nsave_weights = false\nsamples = 0\n";

// `overrides` (--set) come first, so that the bench's own settings win.
absl::StatusOr<trainer::Config> config(int64_t layers, const std::vector<std::string>& sets,
                                       const std::vector<std::string>& overrides) {
  std::vector<std::string> o = overrides;
  o.insert(o.end(), sets.begin(), sets.end());
  o.push_back("model.n_layer=" + std::to_string(layers));
  return trainer::parse_config(kToml, "bench", o);
}

// The largest L in [1, 1024] for which fits(L) holds (fits is monotone), or 0.
template <class Fits>
absl::StatusOr<int64_t> largest(Fits fits) {
  MEMTRAIN_ASSIGN_OR_RETURN(bool one, fits(1));
  if (!one) return 0;
  int64_t lo = 1, hi = 2;
  while (hi <= 1024) {
    MEMTRAIN_ASSIGN_OR_RETURN(bool ok, fits(hi));
    if (!ok) break;
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    MEMTRAIN_ASSIGN_OR_RETURN(bool ok, fits(mid));
    (ok ? lo : hi) = mid;
  }
  return lo;
}

struct Measured {
  double step_ms = 0;
  int64_t peak = 0;
};

absl::StatusOr<Measured> train(const trainer::Config& cfg, const std::string& out) {
  MEMTRAIN_RETURN_IF_ERROR(trainer::run_training(cfg, /*quiet=*/true).status());
  const bench::RunFigures run = bench::read_run_figures(out + "/metrics.jsonl");
  std::filesystem::remove_all(out);
  return Measured{run.median_step_ms, run.peak_sum};
}

absl::Status run(const std::string& dir, int steps, const std::vector<double>& budgets,
                 const std::vector<double>& measure, const std::vector<std::string>& overrides) {
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config probe_cfg, config(1, {"offload.ssd_path=" + dir}, overrides));
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::Bandwidths bw, trainer::probe_bandwidths(probe_cfg));
  std::printf("probe: sgemm %.1f GFLOP/s, swap file write %.2f GB/s read %.2f GB/s (%s)\n", bw.flops / 1e9,
              bw.ssd_write / 1e9, bw.ssd_read / 1e9, dir.c_str());
  std::printf("%-8s %12s %12s  %s\n", "budget", "keep", "planner", "the planner's choice for its largest model");
  for (double gib : budgets) {
    const std::string budget = "memory.budget=" + std::to_string(static_cast<int64_t>(gib * (1 << 30)));
    auto keep_fits = [&](int64_t L) -> absl::StatusOr<bool> {
      MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config c, config(L, {budget}, overrides));
      MEMTRAIN_ASSIGN_OR_RETURN(trainer::MemoryPlan p, trainer::plan_memory(c));
      return p.fits();
    };
    const std::vector<std::string> auto_sets = {budget, "memory.activations=auto", "offload.ssd_path=" + dir};
    auto planner_fits = [&](int64_t L) -> absl::StatusOr<bool> {
      MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config c, config(L, auto_sets, overrides));
      return trainer::plan_policies(c, 1, bw).ok();
    };
    MEMTRAIN_ASSIGN_OR_RETURN(int64_t keep_l, largest(keep_fits));
    MEMTRAIN_ASSIGN_OR_RETURN(int64_t auto_l, largest(planner_fits));
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config c, config(auto_l, auto_sets, overrides));
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::PolicyPlan chosen, trainer::plan_policies(c, 1, bw));
    std::printf("%5.1f GiB %5lld layers %5lld layers  %s (%.1fM parameters)\n", gib, static_cast<long long>(keep_l),
                static_cast<long long>(auto_l), trainer::describe(chosen).c_str(),
                static_cast<double>(chosen.memory.parameters_count) / 1e6);
    if (std::find(measure.begin(), measure.end(), gib) == measure.end()) continue;
    const std::string out = dir + "/memtrain_bench_budget";
    std::vector<std::string> planned = auto_sets;
    planned.insert(planned.end(), {"train.max_steps=" + std::to_string(steps), "output.dir=" + out});
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config under, config(auto_l, planned, overrides));
    MEMTRAIN_ASSIGN_OR_RETURN(Measured a, train(under, out));
    MEMTRAIN_ASSIGN_OR_RETURN(
        trainer::Config keep,
        config(auto_l, {"train.max_steps=" + std::to_string(steps), "output.dir=" + out}, overrides));
    MEMTRAIN_ASSIGN_OR_RETURN(Measured k, train(keep, out));
    std::printf("         measured, %lld layers: planned %.0f ms/step, peak %.1f MiB (budget %.1f MiB); keep without "
                "a budget %.0f ms/step, peak %.1f MiB; slowdown %.2fx\n",
                static_cast<long long>(auto_l), a.step_ms, a.peak / 1048576.0, gib * 1024, k.step_ms,
                k.peak / 1048576.0, a.step_ms / k.step_ms);
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::filesystem::temp_directory_path().string();
  int steps = 3;
  std::vector<double> budgets = {0.5, 1, 2, 4}, measure;
  std::vector<std::string> overrides;
  std::vector<double>* list = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--set" && i + 1 < argc) {
      overrides.push_back(argv[++i]);
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::max(2, std::atoi(argv[++i]));
    } else if (a == "--measure" || a == "--budgets") {
      list = a == "--measure" ? &measure : &budgets;
      list->clear();
    } else if (list != nullptr && std::atof(a.c_str()) > 0) {
      list->push_back(std::atof(a.c_str()));
    } else {
      std::fprintf(stderr, "usage: %s [--dir SSD_DIR] [--steps N] [--measure GIB ...] [--budgets GIB ...] [--set K=V ...]\n", argv[0]);
      return 2;
    }
  }
  const absl::Status s = run(dir, steps, budgets, measure, overrides);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
