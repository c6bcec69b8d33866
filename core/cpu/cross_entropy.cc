// Softmax cross-entropy, one row per inner call: max, then sum of exp (stored into dlogits when wanted), then scale.
// Vectorised with AVX2 and the shared vector exp.
#include "core/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/cpu/vec_math.h"
#include "core/status.h"

namespace memtrain::cpu {
namespace {

constexpr int64_t W = vec::kWidth;

float row_max(const float* x, int64_t V) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t c = 0;
  for (; c + W <= V; c += W) m = _mm256_max_ps(m, _mm256_loadu_ps(x + c));
  float r = vec::hmax(m);
  for (; c < V; ++c) r = std::max(r, x[c]);
  return r;
}

// Sum of exp(x - mx); when e != nullptr also stores the exps there (e may alias x).
float row_exp_sum(const float* x, float mx, int64_t V, float* e) {
  const __m256 mv = _mm256_set1_ps(mx);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 2 * W <= V; c += 2 * W) {
    const __m256 e0 = vec::exp(_mm256_sub_ps(_mm256_loadu_ps(x + c), mv));
    const __m256 e1 = vec::exp(_mm256_sub_ps(_mm256_loadu_ps(x + c + W), mv));
    a0 = _mm256_add_ps(a0, e0);
    a1 = _mm256_add_ps(a1, e1);
    if (e) {
      _mm256_storeu_ps(e + c, e0);
      _mm256_storeu_ps(e + c + W, e1);
    }
  }
  for (; c < V; c += W) {
    const int64_t k = V - c;
    // Masked-off lanes would give exp(0 - mx); mask the result so they add 0.
    const __m256 mask = _mm256_castsi256_ps(vec::tail_mask(k));
    const __m256 ev = _mm256_and_ps(vec::exp(_mm256_sub_ps(vec::load(x + c, k), mv)), mask);
    a0 = _mm256_add_ps(a0, ev);
    if (e) vec::store(e + c, k, ev);
  }
  return vec::hsum(_mm256_add_ps(a0, a1));
}

// Returns the row's loss.
double row_loss(const float* x, int32_t target, int64_t V, float grad_scale, float* d) {
  if (target < 0) {
    if (d) std::memset(d, 0, V * sizeof(float));
    return 0.0;
  }
  MEMTRAIN_CHECK(target < V);
  const float mx = row_max(x, V);
  const float xt = x[target];  // read before d (which may alias x) is overwritten
  const float sum = row_exp_sum(x, mx, V, d);
  if (d) {
    const __m256 f = _mm256_set1_ps(grad_scale / sum);
    for (int64_t c = 0; c < V; c += W) vec::store(d + c, V - c, _mm256_mul_ps(vec::load(d + c, V - c), f));
    d[target] -= grad_scale;
  }
  // In double: log(sum) is small next to mx - xt, and the subtraction should not lose its digits.
  return static_cast<double>(mx) + std::log(static_cast<double>(sum)) - static_cast<double>(xt);
}

}  // namespace

double softmax_cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t V, float grad_scale,
                             float* dlogits, float* losses, ThreadPool& pool) {
  MEMTRAIN_CHECK(V > 0 && rows >= 0);
  thread_local std::vector<double> row_losses;
  row_losses.resize(rows);
  double* rl = row_losses.data();
  const int64_t grain = std::max<int64_t>(1, 16384 / V);  // rows per task
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      rl[r] = row_loss(logits + r * V, targets[r], V, grad_scale, dlogits ? dlogits + r * V : nullptr);
  });
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    total += rl[r];
    if (losses) losses[r] = static_cast<float>(rl[r]);
  }
  return total;
}

}  // namespace memtrain::cpu
