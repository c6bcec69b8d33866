// Activation swapping figures. (1) Throughput of the swap_ssd tier against the raw O_DIRECT throughput of the same
// file system, measured in the same run: sequential 4 MiB pwrite/pread with O_DIRECT on one file, then the tier
// writing and reading back the same bytes as 16 MiB tensors. (2) Step time and peak bytes of one training config
// under keep, recompute, swap_host and swap_ssd at the same batch: median step time, its ratio to keep, and the
// allocator's activation and swap peaks next to `memtrain plan`.
// Usage: bench/activation_swap [--dir DIR] [--mib N] [--steps N] [--config CONFIG] [--set section.key=value ...]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/run_figures.h"
#include "core/file_io.h"
#include "offload/ssd_swap.h"
#include "offload/swap_probe.h"
#include "trainer/config.h"
#include "trainer/plan.h"
#include "trainer/train_loop.h"

using namespace memtrain;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// O_DIRECT writes then reads of `bytes` in 4 MiB pieces by `depth` threads (each its own contiguous part, so
// `depth` transfers are in flight, as a queue of that depth would keep): GB/s each way.
absl::StatusOr<std::pair<double, double>> raw_direct(const std::string& dir, int64_t bytes, int depth) {
  const std::string path = dir + "/memtrain-raw-direct.bin";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
  if (fd < 0) return errno_error(path, "open with O_DIRECT", errno);
  ::unlink(path.c_str());
  constexpr int64_t kPiece = offload::SsdSwap::kChunk;
  const int64_t part = bytes / depth / kPiece * kPiece;
  std::atomic<int> failed{0};
  auto pass = [&](bool write) {
    std::vector<std::thread> threads;
    for (int k = 0; k < depth; ++k) {
      threads.emplace_back([&, k] {
        void* buf = std::aligned_alloc(4096, kPiece);
        std::memset(buf, 0x5a, kPiece);
        for (int64_t at = k * part; at < (k + 1) * part; at += kPiece) {
          const ssize_t n = write ? ::pwrite(fd, buf, kPiece, at) : ::pread(fd, buf, kPiece, at);
          if (n != kPiece) failed = errno ? errno : EIO;
        }
        std::free(buf);
      });
    }
    for (auto& t : threads) t.join();
    if (write) ::fdatasync(fd);
  };
  auto t0 = std::chrono::steady_clock::now();
  pass(true);
  const double w = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  pass(false);
  const double r = seconds_since(t0);
  ::close(fd);
  if (failed) return errno_error(path, "O_DIRECT transfer", failed);
  return std::make_pair(depth * part / w / 1e9, depth * part / r / 1e9);
}

// The tier writing `bytes` as 16 MiB tensors (all queued, then waited for, then fdatasync) and reading them back.
absl::StatusOr<std::pair<double, double>> tier_throughput(const std::string& dir, int64_t bytes, bool* direct) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<offload::SsdSwap> tier, offload::SsdSwap::create(dir, "bench"));
  *direct = tier->direct();
  constexpr int64_t kTensor = 16 << 20;
  auto sync = [](SwapTier& t) { ::fdatasync(static_cast<offload::SsdSwap&>(t).fd()); };
  MEMTRAIN_ASSIGN_OR_RETURN(offload::SwapRates rates,
                            offload::measure_swap_rates(*tier, kTensor, static_cast<int>(bytes / kTensor),
                                                        MemCategory::kActivations, sync));
  return std::make_pair(rates.write / 1e9, rates.read / 1e9);
}

std::string mib(int64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f", static_cast<double>(b) / (1 << 20));
  return s;
}

absl::Status step_times(const std::string& config, const std::string& dir, int steps,
                        const std::vector<std::string>& sets) {
  std::printf("\n%-10s %9s %9s %10s %10s %10s %10s\n", "policy", "step_ms", "vs_keep", "act_MiB", "plan_act",
              "swap_MiB", "plan_swap");
  double keep_ms = 0;
  for (const char* policy : {"keep", "recompute", "swap_host", "swap_ssd"}) {
    std::vector<std::string> o = sets;
    o.push_back(std::string("memory.activations=") + policy);
    o.push_back("offload.ssd_path=" + dir);
    o.push_back("output.dir=" + dir + "/run");
    o.push_back("train.max_steps=" + std::to_string(steps));
    o.push_back("train.log_interval=1");
    o.push_back("train.eval_interval=0");
    o.push_back("output.samples=0");
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config cfg, trainer::load_config(config, o));
    MEMTRAIN_RETURN_IF_ERROR(trainer::run_training(cfg, /*quiet=*/true).status());
    const bench::RunFigures run = bench::read_run_figures(dir + "/run/metrics.jsonl");
    const double median = run.median_step_ms;
    if (keep_ms == 0) keep_ms = median;
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::MemoryPlan plan, trainer::plan_memory(cfg, 1, 0));
    const nlohmann::json& mem = run.last["mem"];
    std::printf("%-10s %9.1f %8.2fx %10s %10s %10s %10s\n", policy, median, median / keep_ms,
                mib(mem["activations"].get<int64_t>()).c_str(),
                mib(plan.bytes[static_cast<int>(MemCategory::kActivations)]).c_str(),
                mib(mem["swap"].get<int64_t>()).c_str(), mib(plan.bytes[static_cast<int>(MemCategory::kSwap)]).c_str());
    std::filesystem::remove_all(dir + "/run");
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::filesystem::temp_directory_path().string();
  std::string config = std::string(MEMTRAIN_SOURCE_DIR) + "/configs/default.toml";
  int64_t mib_total = 1024;
  int steps = 6;
  std::vector<std::string> sets;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--mib" && i + 1 < argc) {
      mib_total = std::max(16, std::atoi(argv[++i]));
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::max(3, std::atoi(argv[++i]));
    } else if (a == "--config" && i + 1 < argc) {
      config = argv[++i];
    } else if (a == "--set" && i + 1 < argc) {
      sets.push_back(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--dir DIR] [--mib N] [--steps N] [--config CONFIG] [--set k=v ...]\n", argv[0]);
      return 2;
    }
  }
  const int64_t bytes = mib_total << 20;
  bool direct = false;
  auto tier = tier_throughput(dir, bytes, &direct);
  if (!tier.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(tier.status().message()).c_str());
    return 1;
  }
  std::printf("%s, %lld MiB as 16 MiB tensors: swap_ssd tier (O_DIRECT %s, 2 transfers in flight) write %.2f GB/s, "
              "read %.2f GB/s\n", dir.c_str(), static_cast<long long>(mib_total), direct ? "yes" : "no", tier->first,
              tier->second);
  for (int depth : {1, 2, 4}) {
    auto raw = raw_direct(dir, bytes, depth);
    if (!raw.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(raw.status().message()).c_str());
      return 1;
    }
    std::printf("raw O_DIRECT, %d in flight: write %.2f GB/s, read %.2f GB/s; the tier reaches %.0f%% and %.0f%%\n",
                depth, raw->first, raw->second, 100 * tier->first / raw->first, 100 * tier->second / raw->second);
  }
  const absl::Status s = step_times(config, dir, steps, sets);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
