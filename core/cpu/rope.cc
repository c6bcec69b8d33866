// RoPE kernels. cos/sin come from a process-wide table per (D, theta) over positions 0..P-1, built once and grown
// on demand, so a training step pays for no trigonometry; huge positions fall back to a per-call table per row.
#include "core/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "core/cpu/vec_math.h"
#include "core/status.h"

namespace memtrain::cpu {
namespace {

constexpr int64_t W = vec::kWidth;
constexpr int64_t kMaxCachedFloats = int64_t{1} << 22;  // 16 MiB: 32K positions at D = 128

// cos then sin of the D/2 angles of one position, as HF computes them: inv_freq = 1 / theta^(2i/D) and
// angle = pos * inv_freq both in fp32 (the fp32 angle matters at large positions), cos/sin correctly rounded.
void fill_row(int64_t p, int64_t D, const std::vector<float>& inv_freq, float* cs) {
  const int64_t half = D / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(p) * inv_freq[i];
    cs[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    cs[half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

std::vector<float> inv_freqs(int64_t D, double theta) {
  std::vector<float> f(D / 2);
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < D / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(D);
    f[i] = 1.0f / static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(e)));
  }
  return f;
}

struct Table {
  int64_t D;
  double theta;
  int64_t positions;  // rows 0..positions-1
  std::vector<float> cs;  // (positions, D): see fill_row
};

// The cached table for (D, theta) covering positions [0, needed), or nullptr when that would be too large. A few
// (D, theta) pairs are kept, so models that mix head sizes or bases do not rebuild on every call.
std::shared_ptr<const Table> cached_table(int64_t D, double theta, int64_t needed, ThreadPool& pool) {
  constexpr size_t kMaxTables = 4;
  static std::mutex mu;
  static std::vector<std::shared_ptr<const Table>> cache;  // most recently built last
  if (needed * D > kMaxCachedFloats) return nullptr;
  int64_t positions = std::max<int64_t>(needed, 256);
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& t : cache) {
      if (t->D != D || t->theta != theta) continue;
      if (t->positions >= needed) return t;
      // Grow geometrically so that a slowly increasing max position does not rebuild every call.
      positions = std::max(positions, 2 * t->positions);
    }
  }
  positions = std::max(needed, std::min(positions, kMaxCachedFloats / D));
  // Built without the lock held: the pool may be busy with a task that itself waits for this lock.
  auto t = std::make_shared<Table>(Table{D, theta, positions, std::vector<float>(positions * D)});
  const std::vector<float> inv = inv_freqs(D, theta);
  pool.parallel_for(positions, 64, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) fill_row(p, D, inv, t->cs.data() + p * D);
  });
  std::lock_guard<std::mutex> lock(mu);
  std::erase_if(cache, [&](const auto& c) { return c->D == D && c->theta == theta && c->positions <= positions; });
  if (cache.size() == kMaxTables) cache.erase(cache.begin());
  cache.push_back(t);
  return t;
}

// Rotates the H heads of one row. Forward: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s); inverse: the sign of s flips.
// Separate multiplies and adds (no FMA) as HF's q * cos + rotate_half(q) * sin.
template <bool kInverse>
void rotate_row(float* x, int64_t H, int64_t D, const float* cs) {
  const int64_t half = D / 2;
  const float* cosv = cs;
  const float* sinv = cs + half;
  for (int64_t h = 0; h < H; ++h) {
    float* x1p = x + h * D;
    float* x2p = x1p + half;
    for (int64_t i = 0; i < half; i += W) {
      const int64_t k = half - i;
      const __m256 x1 = vec::load(x1p + i, k), x2 = vec::load(x2p + i, k);
      const __m256 c = vec::load(cosv + i, k), s = vec::load(sinv + i, k);
      __m256 y1, y2;
      if constexpr (kInverse) {
        y1 = _mm256_add_ps(_mm256_mul_ps(x1, c), _mm256_mul_ps(x2, s));
        y2 = _mm256_sub_ps(_mm256_mul_ps(x2, c), _mm256_mul_ps(x1, s));
      } else {
        y1 = _mm256_sub_ps(_mm256_mul_ps(x1, c), _mm256_mul_ps(x2, s));
        y2 = _mm256_add_ps(_mm256_mul_ps(x2, c), _mm256_mul_ps(x1, s));
      }
      vec::store(x1p + i, k, y1);
      vec::store(x2p + i, k, y2);
    }
  }
}

template <bool kInverse>
void rope_apply(float* x, int64_t tokens, int64_t H, int64_t D, int64_t ld, const int32_t* pos, double theta,
                ThreadPool& pool) {
  MEMTRAIN_CHECK(D > 0 && D % 2 == 0 && H >= 0 && tokens >= 0 && ld >= H * D);
  if (tokens == 0 || H == 0) return;
  int64_t max_pos = 0;
  for (int64_t r = 0; r < tokens; ++r) {
    MEMTRAIN_CHECK(pos[r] >= 0);
    max_pos = std::max<int64_t>(max_pos, pos[r]);
  }
  const int64_t grain = std::max<int64_t>(1, 16384 / (H * D));  // rows per task
  std::shared_ptr<const Table> table = cached_table(D, theta, max_pos + 1, pool);
  if (table) {
    const float* cs = table->cs.data();
    pool.parallel_for(tokens, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) rotate_row<kInverse>(x + r * ld, H, D, cs + pos[r] * D);
    });
    return;
  }
  // Positions beyond the cache: cos/sin once per row (not per head), in each task's own buffer.
  const std::vector<float> inv = inv_freqs(D, theta);
  pool.parallel_for(tokens, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> cs(D);
    for (int64_t r = r0; r < r1; ++r) {
      fill_row(pos[r], D, inv, cs.data());
      rotate_row<kInverse>(x + r * ld, H, D, cs.data());
    }
  });
}

}  // namespace

void rope_forward(float* x, int64_t tokens, int64_t H, int64_t D, int64_t ld, const int32_t* pos, double theta,
                  ThreadPool& pool) {
  rope_apply<false>(x, tokens, H, D, ld, pos, theta, pool);
}

void rope_backward(float* dx, int64_t tokens, int64_t H, int64_t D, int64_t ld, const int32_t* pos, double theta,
                   ThreadPool& pool) {
  rope_apply<true>(dx, tokens, H, D, ld, pos, theta, pool);
}

}  // namespace memtrain::cpu
