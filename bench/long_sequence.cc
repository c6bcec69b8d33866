// Long sequences on one process: what each memory.activations policy (keep, recompute, stream = StreamBP) holds
// per token and costs per step as the sequence grows, and the longest sequence whose plan fits a budget.
// (1) For each sequence length T (batch 1, model.block_size = T): `--steps` training steps per policy; the median
// step time, its ratio to recompute's, the allocator's activation peak of the last step, `memtrain plan`'s
// prediction beside it, and the measured peak per token. (2) Per policy, the longest T (a multiple of 256) whose
// plan (all categories) fits `--budget` MiB, then 2 steps trained at that T under memory.budget (the allocator
// enforces it) to show it does.
// Usage: bench/long_sequence [--config CONFIG] [--seqs 512,1024,...] [--budget MiB] [--chunk N] [--steps N]
//                            [--set section.key=value ...]
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/run_figures.h"
#include "trainer/config.h"
#include "trainer/plan.h"
#include "trainer/train_loop.h"

using namespace memtrain;

namespace {

struct Options {
  std::string config = std::string(MEMTRAIN_SOURCE_DIR) + "/configs/llama_tiny.toml";
  std::vector<int64_t> seqs = {512, 1024, 2048, 4096};
  int64_t budget_mib = 256, chunk = 256;
  int steps = 4;
  std::vector<std::string> sets;
};

const char* kPolicies[] = {"keep", "recompute", "stream"};

std::vector<std::string> overrides(const Options& o, const std::string& policy, int64_t T, const std::string& dir) {
  std::vector<std::string> s = o.sets;
  s.insert(s.end(), {"memory.activations=" + policy, "memory.stream_chunk=" + std::to_string(o.chunk),
                     "model.block_size=" + std::to_string(T), "train.batch_size=1", "output.dir=" + dir,
                     "train.log_interval=1", "train.eval_interval=0", "output.samples=0",
                     "output.save_weights=false"});
  return s;
}

double mib(int64_t b) { return static_cast<double>(b) / (1 << 20); }

absl::Status per_token(const Options& o, const std::string& dir) {
  std::printf("%6s %-10s %9s %9s %10s %10s %12s\n", "T", "policy", "step_ms", "vs_recomp", "act_MiB", "plan_act",
              "act_KiB/tok");
  for (int64_t T : o.seqs) {
    double recompute_ms = 0;
    for (const char* policy : kPolicies) {
      std::vector<std::string> s = overrides(o, policy, T, dir);
      s.push_back("train.max_steps=" + std::to_string(o.steps));
      MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config cfg, trainer::load_config(o.config, s));
      MEMTRAIN_RETURN_IF_ERROR(trainer::run_training(cfg, /*quiet=*/true).status());
      const bench::RunFigures run = bench::read_run_figures(dir + "/metrics.jsonl");
      MEMTRAIN_ASSIGN_OR_RETURN(trainer::MemoryPlan plan, trainer::plan_memory(cfg, 1, 0));
      const int64_t act = run.last["mem"]["activations"].get<int64_t>();
      if (std::string(policy) == "recompute") recompute_ms = run.median_step_ms;
      const double ratio = recompute_ms > 0 ? run.median_step_ms / recompute_ms : 0;
      std::printf("%6lld %-10s %9.1f %9s %10.1f %10.1f %12.1f\n", static_cast<long long>(T), policy,
                  run.median_step_ms, ratio > 0 ? (std::to_string(ratio).substr(0, 4) + "x").c_str() : "-",
                  mib(act), mib(plan.bytes[static_cast<int>(MemCategory::kActivations)]),
                  static_cast<double>(act) / T / 1024);
      std::filesystem::remove_all(dir);
    }
  }
  return absl::OkStatus();
}

absl::Status longest_under_budget(const Options& o, const std::string& dir) {
  const int64_t budget = o.budget_mib << 20;
  std::printf("\nlongest sequence (multiple of 256, batch 1) whose plan fits %lld MiB, trained 2 steps under it:\n",
              static_cast<long long>(o.budget_mib));
  for (const char* policy : kPolicies) {
    int64_t best = 0;
    for (int64_t T = 256; T <= (int64_t{1} << 22); T += 256) {
      MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config cfg, trainer::load_config(o.config, overrides(o, policy, T, dir)));
      MEMTRAIN_ASSIGN_OR_RETURN(trainer::MemoryPlan plan, trainer::plan_memory(cfg, 1, 0));
      if (plan.total > budget) break;
      best = T;
    }
    if (best == 0) {
      std::printf("%-10s none\n", policy);
      continue;
    }
    std::vector<std::string> s = overrides(o, policy, best, dir);
    s.push_back("train.max_steps=2");
    s.push_back("memory.budget=" + std::to_string(budget));
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config cfg, trainer::load_config(o.config, s));
    const absl::Status trained = trainer::run_training(cfg, /*quiet=*/true).status();
    const bench::RunFigures run = bench::read_run_figures(dir + "/metrics.jsonl");
    std::printf("%-10s T = %6lld: %s, step %.0f ms, peak %.1f MiB (sum of category peaks)\n", policy,
                static_cast<long long>(best), trained.ok() ? "trained" : std::string(trained.message()).c_str(),
                run.median_step_ms, mib(run.peak_sum));
    std::filesystem::remove_all(dir);
  }
  return absl::OkStatus();
}

bool parse_list(const std::string& s, std::vector<int64_t>& out) {
  out.clear();
  for (absl::string_view p : absl::StrSplit(s, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(p, &v) || v <= 0) return false;
    out.push_back(v);
  }
  return !out.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool more = i + 1 < argc;
    if (a == "--config" && more) {
      o.config = argv[++i];
    } else if (a == "--seqs" && more && parse_list(argv[i + 1], o.seqs)) {
      ++i;
    } else if (a == "--budget" && more && absl::SimpleAtoi(argv[i + 1], &o.budget_mib)) {
      ++i;
    } else if (a == "--chunk" && more && absl::SimpleAtoi(argv[i + 1], &o.chunk)) {
      ++i;
    } else if (a == "--steps" && more) {
      o.steps = std::max(2, std::atoi(argv[++i]));
    } else if (a == "--set" && more) {
      o.sets.push_back(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--config C] [--seqs 512,1024] [--budget MiB] [--chunk N] [--steps N] "
                           "[--set k=v ...]\n", argv[0]);
      return 2;
    }
  }
  const std::string dir = (std::filesystem::temp_directory_path() / "memtrain-long-sequence").string();
  absl::Status s = per_token(o, dir);
  if (s.ok()) s = longest_under_budget(o, dir);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
