#include "optim/zo_sgd.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/thread_pool.h"

namespace memtrain::optim {
namespace {
constexpr int64_t kBlock = 1024;  // elements generated at once, on the stack
}  // namespace

std::unique_ptr<ZoSgd> ZoSgd::create(std::vector<OptimTarget> targets, std::vector<OptimTarget> perturbed,
                                     const OptimConfig& cfg, uint64_t seed) {
  return std::unique_ptr<ZoSgd>(new ZoSgd(std::move(targets), std::move(perturbed), cfg, seed));
}

PhiloxKey ZoSgd::direction_key(const model::Param& p, uint64_t seed, int64_t step) {
  const PhiloxKey step_key = philox_key(seed, absl::StrCat("zo_sgd.step.", step));
  return philox_key((static_cast<uint64_t>(step_key.k0) << 32) | step_key.k1, p.name);
}

void ZoSgd::direction(const model::Param& p, PhiloxKey key, int64_t offset, int64_t n, float* out) {
  // The local elements [offset, offset + n) as runs of the global tensor (a tensor-parallel part is several).
  model::for_each_global_run(p, [&](int64_t local, int64_t global, int64_t len) {
    const int64_t lo = std::max(local, offset), hi = std::min(local + len, offset + n);
    if (lo < hi) philox_normal(key, global + (lo - local), hi - lo, 0.0f, 1.0f, out + (lo - offset));
  });
}

void ZoSgd::add_direction(const std::vector<OptimTarget>& pieces, double scale, bool decay, double lr) {
  ThreadPool& pool = ThreadPool::global();
  for (const OptimTarget& t : pieces) {
    const float s = static_cast<float>(scale);
    const float lr_wd = decay && decays(*t.param, cfg_) ? static_cast<float>(lr * cfg_.weight_decay) : 0.0f;
    const PhiloxKey key = direction_key(*t.param, seed_, step_);  // once per piece, not per block
    pool.parallel_for(t.n, kBlock, [&](int64_t begin, int64_t end) {
      float z[kBlock];
      direction(*t.param, key, t.offset + begin, end - begin, z);
      float* v = t.value + begin;
      for (int64_t i = 0; i < end - begin; ++i) v[i] = v[i] - lr_wd * v[i] + s * z[i];
    });
  }
}

void ZoSgd::perturb(double scale) { add_direction(perturbed_, scale, /*decay=*/false, 0.0); }

absl::Status ZoSgd::step(double lr) {
  add_direction(targets_, -lr * projected_gradient_, /*decay=*/true, lr);
  ++step_;
  return absl::OkStatus();
}

}  // namespace memtrain::optim
