// Which vector instruction set the fp32 kernels of core/cpu run with: AVX2 (the build's baseline) or AVX-512,
// chosen once at run time from the CPU and the MEMTRAIN_SIMD environment variable.
#pragma once

namespace memtrain::cpu {

enum class SimdLevel { kAvx2, kAvx512 };

const char* simd_level_name(SimdLevel level);  // "avx2" or "avx512"

// True where the CPU has every AVX-512 subset the AVX-512 kernels are compiled for (F, BW, DQ, VL).
bool cpu_has_avx512();

// The level kernels dispatch on. Decided on first use: AVX-512 where cpu_has_avx512(), else AVX2; the environment
// variable MEMTRAIN_SIMD=avx2|avx512 overrides that (avx512 on a CPU without it, or any other value, prints an
// error once and keeps the detected level, never going above what the CPU has).
SimdLevel simd_level();

// The rule simd_level() applies to the value of MEMTRAIN_SIMD (nullptr when unset), printing its error messages;
// exposed for tests.
SimdLevel choose_simd_level(const char* env_value, bool has_avx512);

// Forces simd_level() for its lifetime (tests and benchmarks comparing the paths), then restores the previous
// level. Aborts for kAvx512 on a CPU without it. Not for use while kernels run on other threads.
class ScopedSimdLevel {
 public:
  explicit ScopedSimdLevel(SimdLevel level);
  ~ScopedSimdLevel();
  ScopedSimdLevel(const ScopedSimdLevel&) = delete;
  ScopedSimdLevel& operator=(const ScopedSimdLevel&) = delete;

 private:
  SimdLevel previous_;
};

}  // namespace memtrain::cpu
