// Run-time choice of the kernels' instruction set; see simd_level.h.
#include "core/cpu/simd_level.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/status.h"

namespace memtrain::cpu {
namespace {

// The one piece of state: the current level, detected on first use (a magic static, so choose_simd_level's
// messages print once) and changed only by ScopedSimdLevel.
std::atomic<SimdLevel>& current_level() {
  static std::atomic<SimdLevel> level{choose_simd_level(std::getenv("MEMTRAIN_SIMD"), cpu_has_avx512())};
  return level;
}

}  // namespace

SimdLevel choose_simd_level(const char* env, bool has_avx512) {
  const SimdLevel cpu_level = has_avx512 ? SimdLevel::kAvx512 : SimdLevel::kAvx2;
  if (env == nullptr || *env == '\0') return cpu_level;
  if (std::strcmp(env, "avx2") == 0) return SimdLevel::kAvx2;
  if (std::strcmp(env, "avx512") == 0) {
    if (has_avx512) return SimdLevel::kAvx512;
    std::fprintf(stderr, "error: MEMTRAIN_SIMD=avx512 but this CPU lacks AVX-512 F/BW/DQ/VL; using avx2\n");
    return SimdLevel::kAvx2;
  }
  std::fprintf(stderr, "error: MEMTRAIN_SIMD=%s: expected avx2 or avx512; using %s\n", env,
               simd_level_name(cpu_level));
  return cpu_level;
}

const char* simd_level_name(SimdLevel level) { return level == SimdLevel::kAvx512 ? "avx512" : "avx2"; }

bool cpu_has_avx512() {
  // __builtin_cpu_supports also checks that the OS saves the zmm and mask registers (XCR0), not just CPUID.
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return has;
}

SimdLevel simd_level() { return current_level().load(std::memory_order_relaxed); }

ScopedSimdLevel::ScopedSimdLevel(SimdLevel level) : previous_(simd_level()) {
  MEMTRAIN_CHECK_MSG(level != SimdLevel::kAvx512 || cpu_has_avx512(), "this CPU lacks AVX-512 F/BW/DQ/VL");
  current_level().store(level, std::memory_order_relaxed);
}

ScopedSimdLevel::~ScopedSimdLevel() { current_level().store(previous_, std::memory_order_relaxed); }

}  // namespace memtrain::cpu
