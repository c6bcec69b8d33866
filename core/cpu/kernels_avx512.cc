// The AVX-512 instantiation of the kernel inner loops. This file alone is compiled with -mavx512f/bw/dq/vl
// (core/CMakeLists.txt); its code runs only when simd_level() says the CPU has AVX-512. It includes nothing but
// the templates and intrinsics of simd_kernels.h, so that no inline function shared with other files gets an
// AVX-512 copy here that the linker might keep for AVX2-only callers.
#if !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__))
#error "kernels_avx512.cc must be compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl"
#endif

// GCC 12's AVX-512 intrinsics start from self-initialised "undefined" vectors (__m512 __Y = __Y), which
// -Wuninitialized reports once they are inlined (GCC PR 105593, fixed in GCC 13); nothing here is uninitialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "core/cpu/kernel_table.h"
#include "core/cpu/simd_kernels.h"

namespace memtrain::cpu {

// constinit: addresses only, filled in at compile time, so nothing from this file runs before it is chosen.
constinit const KernelTable kAvx512Kernels = simd::make_table<simd::Avx512>();

}  // namespace memtrain::cpu
