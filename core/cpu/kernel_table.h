// The dispatch table between the public fp32 kernels (gelu.h, layer_norm.h, ...) and their inner loops, one table
// per instruction set. Each entry works single-threaded on one contiguous range or block of rows; the public
// kernels split the work across the pool in chunks that depend only on the problem size and call the entry of
// kernel_table() on each chunk, so each instruction set is bitwise independent of the thread count.
#pragma once

#include <cstdint>

#include "core/cpu/simd_level.h"

namespace memtrain::cpu {

// AdamW's per-step scalars, rounded to fp32 as torch rounds them (see adamw.cc).
struct AdamWScalars {
  float decay;           // 1 - lr * weight_decay
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float bias_correction2_sqrt;
  float eps;
  float neg_step_size;   // -lr / (1 - beta1^step)
};

struct KernelTable {
  void (*gelu_forward)(const float* x, float* y, int64_t n);
  void (*gelu_backward)(const float* dy, const float* x, float* dx, int64_t n);
  void (*swiglu_forward)(const float* gate, const float* up, float* y, int64_t n);
  void (*swiglu_backward)(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n);
  void (*adamw_step)(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWScalars& s);
  // rows x C blocks; mean and rstd get one value per row.
  void (*layer_norm_forward)(const float* x, const float* weight, const float* bias, float eps, int64_t rows,
                             int64_t C, float* y, float* mean, float* rstd);
  // dw_part (C) += dy * xhat and db_part (C) += dy (db_part may be nullptr), summed over the block's rows in order.
  void (*layer_norm_backward)(const float* dy, const float* x, const float* mean, const float* rstd,
                              const float* weight, int64_t rows, int64_t C, float* dx, float* dw_part,
                              float* db_part);
  void (*rms_norm_forward)(const float* x, const float* weight, float eps, int64_t rows, int64_t C, float* y,
                           float* rstd);
  void (*rms_norm_backward)(const float* dy, const float* x, const float* rstd, const float* weight, int64_t rows,
                            int64_t C, float* dx, float* dw_part);
  // One row, 0 <= target < V: returns logsumexp(x) - x[target]; if d != nullptr writes the scaled gradient there.
  double (*cross_entropy_row)(const float* x, int32_t target, int64_t V, float grad_scale, float* d);
  void (*add)(const float* a, const float* b, float* y, int64_t n);
  void (*add_inplace)(float* y, const float* x, int64_t n);
  void (*scale_inplace)(float* x, float s, int64_t n);
  void (*add_bias)(float* y, const float* bias, int64_t rows, int64_t C);
  // part (C) = the block's rows of dy summed in order (the first row copied, then the others added).
  void (*column_sums)(const float* dy, int64_t rows, int64_t C, float* part);
  double (*sum_squares)(const float* x, int64_t n);  // in double, in a fixed order for a given n
  // The vector math itself, over arrays, so that tests can measure its accuracy at each width.
  void (*exp)(const float* x, float* y, int64_t n);
  void (*sigmoid_and_complement)(const float* x, float* s, float* one_minus_s, int64_t n);
};

extern const KernelTable kAvx2Kernels;    // kernels_avx2.cc
extern const KernelTable kAvx512Kernels;  // kernels_avx512.cc, compiled for AVX-512

// The table for simd_level(); kernels read it once per call, before splitting the work.
const KernelTable& kernel_table();

}  // namespace memtrain::cpu
