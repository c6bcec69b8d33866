// bench/kernels: time of each dispatched fp32 kernel of core/cpu at the GPT-2 benchmark's shapes (batch 8 x 256
// tokens = 2048 rows, width 384, MLP 1536, vocab 128, 10.8M parameters), under AVX2 and under AVX-512, on a pool
// of 2 threads. The two levels alternate round by round so that a busy neighbour slows both alike; each figure is
// the median over all rounds.
//   kernels [--rounds N] [--kernel NAME]     NAME: one kernel only (e.g. adamw_step)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/adamw.h"
#include "core/cpu/cross_entropy.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/gelu.h"
#include "core/cpu/layer_norm.h"
#include "core/cpu/rms_norm.h"
#include "core/cpu/simd_level.h"
#include "core/cpu/swiglu.h"
#include "core/thread_pool.h"

namespace memtrain {
namespace {

constexpr int64_t kRows = 2048, kC = 384, kHidden = 1536, kVocab = 128, kParams = 10'800'000;

// 64-byte aligned storage, as core/memory.h hands out tensors. malloc's 16-byte alignment would make every 64-byte
// AVX-512 load straddle two cache lines (~12% slower AdamW on Zen 4), which training never sees.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const Aligned64&) const { return true; }
};
using Floats = std::vector<float, Aligned64<float>>;

Floats random_vector(int64_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Floats v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Bench {
  std::string name, shape;
  std::function<void()> run;
};

double seconds_of(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run(int rounds, const std::string& only) {
  ThreadPool pool(2);
  const int64_t nc = kRows * kC, nh = kRows * kHidden;
  // Inputs; outputs are separate buffers, so that repeated runs see the same data.
  const Floats x = random_vector(nc, -2.0f, 2.0f, 1), dy = random_vector(nc, -1.0f, 1.0f, 2);
  const Floats w = random_vector(kC, 0.5f, 1.5f, 3), b = random_vector(kC, -1.0f, 1.0f, 4);
  const Floats h = random_vector(nh, -4.0f, 4.0f, 5), h2 = random_vector(nh, -4.0f, 4.0f, 6);
  const Floats dh = random_vector(nh, -1.0f, 1.0f, 7);
  const Floats logits = random_vector(kRows * kVocab, -5.0f, 5.0f, 8);
  std::vector<int32_t> targets(kRows);
  for (int64_t r = 0; r < kRows; ++r) targets[r] = static_cast<int32_t>((r * 37) % kVocab);
  Floats grad = random_vector(kParams, -1e-2f, 1e-2f, 9), param = random_vector(kParams, -0.1f, 0.1f, 10);
  Floats m(kParams, 0.0f), v(kParams, 0.0f);
  Floats yc(nc), dxc(nc), yh(nh), dh1(nh), dh2(nh), mean(kRows), rstd(kRows), dw(kC), db(kC), dlogits(kRows * kVocab);
  double sink = 0;

  const std::string rc = "2048x384", rh = "2048x1536";
  int64_t step = 0;
  const std::vector<Bench> benches = {
      {"gelu_forward", rh, [&] { cpu::gelu_forward(h.data(), yh.data(), nh, pool); }},
      {"gelu_backward", rh, [&] { cpu::gelu_backward(dh.data(), h.data(), dh1.data(), nh, pool); }},
      {"swiglu_forward", rh, [&] { cpu::swiglu_forward(h.data(), h2.data(), yh.data(), nh, pool); }},
      {"swiglu_backward", rh,
       [&] { cpu::swiglu_backward(dh.data(), h.data(), h2.data(), dh1.data(), dh2.data(), nh, pool); }},
      {"layer_norm_forward", rc,
       [&] { cpu::layer_norm_forward(x.data(), w.data(), b.data(), 1e-5f, kRows, kC, yc.data(), mean.data(),
                                     rstd.data(), pool); }},
      {"layer_norm_backward", rc,
       [&] { cpu::layer_norm_backward(dy.data(), x.data(), mean.data(), rstd.data(), w.data(), kRows, kC,
                                      dxc.data(), dw.data(), db.data(), pool); }},
      {"rms_norm_forward", rc,
       [&] { cpu::rms_norm_forward(x.data(), w.data(), 1e-6f, kRows, kC, yc.data(), rstd.data(), pool); }},
      {"rms_norm_backward", rc,
       [&] { cpu::rms_norm_backward(dy.data(), x.data(), rstd.data(), w.data(), kRows, kC, dxc.data(), dw.data(),
                                    pool); }},
      {"softmax_cross_entropy", "2048x128",
       [&] { sink += cpu::softmax_cross_entropy(logits.data(), targets.data(), kRows, kVocab, 1.0f / kRows,
                                                dlogits.data(), nullptr, pool); }},
      {"adamw_step", "10.8M",
       [&] { cpu::adamw_step(param.data(), grad.data(), m.data(), v.data(), kParams, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f,
                             ++step, pool); }},
      {"add", rc, [&] { cpu::add(x.data(), dy.data(), yc.data(), nc, pool); }},
      {"add_inplace", rc, [&] { cpu::add_inplace(yc.data(), dy.data(), nc, pool); }},
      {"scale_inplace", rc, [&] { cpu::scale_inplace(yc.data(), 0.999f, nc, pool); }},
      {"add_bias", rc, [&] { cpu::add_bias(yc.data(), b.data(), kRows, kC, pool); }},
      {"bias_backward", rc, [&] { cpu::bias_backward(dy.data(), kRows, kC, db.data(), pool); }},
      {"sum_squares", "10.8M", [&] { sink += cpu::sum_squares(grad.data(), kParams, pool); }},
  };

  std::vector<cpu::SimdLevel> levels = {cpu::SimdLevel::kAvx2};
  if (cpu::cpu_has_avx512()) levels.push_back(cpu::SimdLevel::kAvx512);
  else std::printf("# this CPU lacks AVX-512 F/BW/DQ/VL: AVX2 only\n");
  std::printf("# 2 threads, median of %d rounds (each round: enough calls for ~20 ms, per-call mean)\n", rounds);
  std::printf("%-22s %-10s %12s %12s %8s\n", "kernel", "shape", "avx2_us", "avx512_us", "speedup");
  for (const Bench& bench : benches) {
    if (!only.empty() && bench.name != only) continue;
    bench.run();  // warm-up: page faults, caches
    // Calls per round for ~20 ms.
    const double once = std::max(seconds_of(bench.run), 1e-7);
    const int calls = std::max(1, static_cast<int>(0.02 / once));
    std::vector<std::vector<double>> per_level(levels.size());
    for (int r = 0; r < rounds; ++r) {
      for (size_t l = 0; l < levels.size(); ++l) {
        cpu::ScopedSimdLevel scoped(levels[l]);
        per_level[l].push_back(seconds_of([&] {
                                 for (int i = 0; i < calls; ++i) bench.run();
                               }) / calls);
      }
    }
    const double t2 = median(per_level[0]) * 1e6;
    if (levels.size() == 2) {
      const double t5 = median(per_level[1]) * 1e6;
      std::printf("%-22s %-10s %12.1f %12.1f %7.2fx\n", bench.name.c_str(), bench.shape.c_str(), t2, t5, t2 / t5);
    } else {
      std::printf("%-22s %-10s %12.1f %12s %8s\n", bench.name.c_str(), bench.shape.c_str(), t2, "-", "-");
    }
  }
  std::printf("# (checksum %g)\n", sink);
  return 0;
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  int rounds = 15;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--kernel") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: kernels [--rounds N] [--kernel NAME]\n");
      return 2;
    }
  }
  return memtrain::run(rounds, only);
}
