// The AVX2 (baseline) instantiation of the kernel inner loops, and the run-time choice between the tables.
#include "core/cpu/kernel_table.h"
#include "core/cpu/simd_kernels.h"

namespace memtrain::cpu {

// constinit: a table of addresses filled in at compile time, so no code runs before main to build it.
constinit const KernelTable kAvx2Kernels = simd::make_table<simd::Avx2>();

const KernelTable& kernel_table() {
  return simd_level() == SimdLevel::kAvx512 ? kAvx512Kernels : kAvx2Kernels;
}

}  // namespace memtrain::cpu
