// Optimizer-state figures: for a config, each optimizer's state bytes per parameter as the allocator counts them
// (category optimizer_state) next to optim::optimizer_state_bytes (what `memtrain plan` uses), and the median time
// of one optimizer step over the whole model (random gradients).
// Usage: bench/optimizers CONFIG [--steps N] [--set section.key=value ...]; prints one line per optimizer.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/memory.h"
#include "core/philox.h"
#include "optim/optimizer.h"
#include "trainer/config.h"
#include "trainer/session.h"

using namespace memtrain;

static absl::Status run(const std::string& path, const std::vector<std::string>& sets, int steps) {
  // Each optimizer with its defaults; GaLore also with int8 projections (Q-GaLore).
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"adamw", ""}, {"adamw8bit", ""}, {"adafactor", ""}, {"apollo", ""}, {"apollo_mini", ""}, {"galore_adamw", ""},
      {"galore_adamw", "optim.galore_int8_projection=true"}, {"smmf", ""}, {"coap_adamw", ""},
      // The update alone (no state); a zo_sgd step's cost is its two forwards, in the Shakespeare table.
      {"zo_sgd", ""}};
  for (const auto& [name, extra] : runs) {
    std::vector<std::string> overrides = sets;
    overrides.push_back("optim.name=" + name);
    if (!extra.empty()) overrides.push_back(extra);
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config cfg, trainer::load_config(path, overrides));
    trainer::apply_runtime(cfg);
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<trainer::ModelBundle> bundle, trainer::build_model(cfg));
    const PhiloxKey key = philox_key(1, "bench_grads");
    int64_t offset = 0;
    for (const auto& p : bundle->params.all()) {
      philox_normal(key, offset, p->grad.numel(), 0.0f, 1e-3f, p->grad.f32());
      offset += p->grad.numel();
    }
    const std::vector<optim::OptimTarget> targets = optim::whole_targets(bundle->params);
    int64_t planned = 0;
    for (const optim::OptimTarget& t : targets) planned += optim::optimizer_state_bytes(t, cfg.optim);
    MemoryTracker& mt = MemoryTracker::host();
    const int64_t before = mt.current(MemCategory::kOptimizerState);
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Optimizer> opt, optim::create_optimizer(targets, cfg.optim, 1));
    const int64_t measured = mt.current(MemCategory::kOptimizerState) - before;
    std::vector<double> ms;
    double first_ms = 0;  // the first step also builds projections (GaLore's SVDs)
    for (int s = 0; s < steps + 1; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      MEMTRAIN_RETURN_IF_ERROR(opt->step(1e-4));
      const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (s > 0) ms.push_back(dt);
      if (s == 0) first_ms = dt;
    }
    std::sort(ms.begin(), ms.end());
    const double n = static_cast<double>(bundle->params.numel());
    std::printf("%-10s%s %s %lld params | state %lld bytes measured, %lld planned: %.3f bytes/param | step %.1f ms, first %.1f ms\n",
                name.c_str(), extra.empty() ? "" : " (int8 P)", cfg.model.arch.c_str(), static_cast<long long>(bundle->params.numel()),
                static_cast<long long>(measured), static_cast<long long>(planned), measured / n, ms[ms.size() / 2], first_ms);
  }
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CONFIG [--steps N] [--set section.key=value ...]\n", argv[0]);
    return 2;
  }
  std::vector<std::string> sets;
  int steps = 5;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--set" && i + 1 < argc) {
      sets.push_back(argv[++i]);
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const absl::Status s = run(argv[1], sets, steps);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
