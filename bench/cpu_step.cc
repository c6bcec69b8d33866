// bench/cpu_step: memtrain against the PyTorch reference on one GPT-2-style step (6 layers, 6 heads, width 384,
// vocab 128, batch 8 x 256, AdamW, 2 threads). Each side runs in a child process of its own, one after the
// other, so peak RSS is measured per side (wait4's ru_maxrss). Prints median step times, their ratio, peak RSS and
// GFLOP/s against OpenBLAS sgemm measured in the same run.
//   cpu_step [--steps N] [--python PATH]       the comparison
//   cpu_step --worker memtrain --steps N       one side (used by the comparison)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/gemm.h"
#include "model/model.h"
#include "optim/adamw.h"

namespace memtrain {
namespace {

constexpr int64_t kB = 8, kT = 256;

model::ModelConfig bench_model() {
  model::ModelConfig c;
  c.arch = "gpt2";
  c.vocab_size = 128;
  c.n_layer = 6;
  c.n_head = 6;
  c.n_embd = 384;
  c.block_size = kT;
  return c;
}

// Runs `steps` AdamW steps (plus one warm-up) and prints "median_ms X" and "flops_per_step Y".
int run_worker(int steps) {
  ThreadPool::set_global_threads(2);
  model::ParamSet params;
  auto m = model::Model::create(bench_model(), params);
  MEMTRAIN_CHECK_OK(m.status());
  MEMTRAIN_CHECK_OK(params.allocate());
  params.initialize(1);
  optim::OptimConfig oc;
  auto opt = optim::AdamW::create(params, oc);
  MEMTRAIN_CHECK_OK(opt.status());
  Tensor tokens = *Tensor::empty({kB, kT}, DType::kI32, MemCategory::kActivations);
  Tensor targets = *Tensor::empty({kB, kT}, DType::kI32, MemCategory::kActivations);
  std::mt19937 rng(0);
  for (int64_t i = 0; i < kB * kT; ++i) {
    tokens.i32()[i] = static_cast<int32_t>(rng() % 128);
    targets.i32()[i] = static_cast<int32_t>(rng() % 128);
  }
  std::vector<double> ms;
  for (int s = 0; s <= steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    params.zero_grad();
    model::ActivationStore store;
    MEMTRAIN_CHECK_OK((*m)->forward(tokens, targets, 1.0f / (kB * kT), store).status());
    MEMTRAIN_CHECK_OK((*m)->backward(store));
    MEMTRAIN_CHECK_OK(opt->step(1e-4));
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) ms.push_back(t);  // step 0 warms the pools and caches
  }
  std::sort(ms.begin(), ms.end());
  std::printf("median_ms %.3f\nflops_per_step %.6e\n", ms[ms.size() / 2], (*m)->flops_per_token(kT) * kB * kT);
  return 0;
}

struct ChildResult {
  std::string out;
  long max_rss_kb = 0;
  int status = -1;
};

ChildResult run_child(const std::vector<std::string>& argv) {
  int fds[2];
  MEMTRAIN_CHECK(pipe(fds) == 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::perror(args[0]);
    _exit(127);
  }
  close(fds[1]);
  ChildResult r;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) r.out.append(buf, n);
  close(fds[0]);
  struct rusage ru;
  wait4(pid, &r.status, 0, &ru);
  r.max_rss_kb = ru.ru_maxrss;
  return r;
}

double field(const std::string& out, const char* name) {
  const size_t at = out.find(name);
  return at == std::string::npos ? -1 : std::atof(out.c_str() + at + std::strlen(name));
}

int run_comparison(int steps, const std::string& python, const char* self) {
  ThreadPool::set_global_threads(2);
  const double peak = cpu::measure_sgemm_gflops(ThreadPool::global());
  std::printf("bench/cpu_step: GPT-2 6L 6H 384w, vocab 128, batch %lld x %lld, AdamW, 2 threads, %d steps each\n",
              static_cast<long long>(kB), static_cast<long long>(kT), steps);
  std::printf("OpenBLAS %s kernels (OPENBLAS_CORETYPE=%s, the same for both sides), sgemm 2 threads 1024^3: %.1f GFLOP/s\n",
              cpu::blas_core_name(), std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "unset", peak);
  const ChildResult mt = run_child({self, "--worker", "memtrain", "--steps", std::to_string(steps)});
  const ChildResult pt = run_child({python, std::string(MEMTRAIN_SOURCE_DIR) + "/tests/reference/torch_step_bench.py",
                                    "--steps", std::to_string(steps), "--threads", "2"});
  const double mt_ms = field(mt.out, "median_ms"), pt_ms = field(pt.out, "median_ms");
  const double flops = field(mt.out, "flops_per_step");
  std::printf("%-10s %12s %14s %12s %10s\n", "", "median ms", "GFLOP/s", "% of sgemm", "peak RSS");
  std::printf("%-10s %12.1f %14.1f %11.1f%% %7.0f MiB\n", "memtrain", mt_ms, flops / mt_ms * 1e-6,
              100 * flops / mt_ms * 1e-6 / peak, mt.max_rss_kb / 1024.0);
  if (pt_ms > 0) {
    std::printf("%-10s %12.1f %14.1f %11.1f%% %7.0f MiB\n", "pytorch", pt_ms, flops / pt_ms * 1e-6,
                100 * flops / pt_ms * 1e-6 / peak, pt.max_rss_kb / 1024.0);
    std::printf("ratio memtrain/pytorch: step time %.3f, peak RSS %.3f\n", mt_ms / pt_ms,
                static_cast<double>(mt.max_rss_kb) / static_cast<double>(pt.max_rss_kb));
    std::printf("pytorch: %s", pt.out.substr(0, pt.out.find('\n') + 1).c_str());
  } else {
    std::printf("pytorch: did not run (%s): %s\n", python.c_str(), pt.out.c_str());
  }
  return mt_ms > 0 ? 0 : 1;
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  int steps = 10;
  std::string worker, python = "/usr/bin/python3";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--steps") steps = std::atoi(argv[i + 1]);
    else if (flag == "--worker") worker = argv[i + 1];
    else if (flag == "--python") python = argv[i + 1];
  }
  if (worker == "memtrain") return memtrain::run_worker(steps);
  return memtrain::run_comparison(steps, python, "/proc/self/exe");
}
