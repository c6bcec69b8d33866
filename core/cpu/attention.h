// Causal self-attention on the CPU (fp32), forward and backward, computed blockwise with an online softmax
// (FlashAttention-2 style) so that memory is O(T) per head and results do not depend on the thread count.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// Causal scaled-dot-product attention with grouped-query heads (H query heads share Hkv key/value heads,
// H % Hkv == 0, query head h uses kv head h / (H / Hkv)), scale = 1/sqrt(D).
// q: (B, T, H, D) where token (b, t) starts at q + (b*T + t)*ldq and head h at + h*D; k, v: (B, T, Hkv, D) with
// token strides ldk, ldv; out: (B, T, H, D) with stride ldo (written). lse: (B, H, T) contiguous, the
// log-sum-exp of each query's scaled scores, written for backward. `first` (B, T), optional: the first key each
// query may see, for sequences packed from several examples (query t sees keys first[t]..t; first[t] <= t).
void attention_forward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                       int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, float* out, int64_t ldo,
                       float* lse, ThreadPool& pool, const int32_t* first = nullptr);

// Given dout (stride lddo) and the forward's q, k, v, out, lse: writes (overwrites, not +=) dq (stride lddq),
// dk (lddk), dv (lddv).
void attention_backward(const float* dout, int64_t lddo, const float* q, int64_t ldq, const float* k, int64_t ldk,
                        const float* v, int64_t ldv, const float* out, int64_t ldo, const float* lse,
                        int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                        float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv, ThreadPool& pool,
                        const int32_t* first = nullptr);

// Attention split over blocks of keys (context parallelism's ring visits one block of keys at a time): queries
// (B, Tq) against keys (B, Tk), token (b, t) of q at q + (b*Tq + t)*ldq and of k, v at + (b*Tk + t)*ld; lse and
// delta are (B, H, Tq). kCausal is the diagonal block (Tq == Tk, query i sees keys 0..i); kFull: every key.
enum class AttentionMask { kCausal, kFull };
struct AttentionDims {
  int64_t B, Tq, Tk, H, Hkv, D;
  AttentionMask mask;
  const int32_t* first = nullptr;  // kCausal: (B, Tq) the first key each query may see (packed examples); null = 0
};

// Folds this key block into out and lse, which hold the normalised attention over the keys seen before and its
// log-sum-exp (lse = -inf for a query that has seen none: out is then overwritten).
void attention_forward_merge(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                             const AttentionDims& dims, float* out, int64_t ldo, float* lse, ThreadPool& pool);

// delta (B, H, T) = rowsum(dout * out) per query and head: the softmax backward's correction for the whole
// attention, computed once before the key blocks' backward.
void attention_delta(const float* dout, int64_t lddo, const float* out, int64_t ldo, int64_t B, int64_t T, int64_t H,
                     int64_t D, float* delta, ThreadPool& pool);

// Adds this key block's part of the gradients into dq, dk and dv, given the whole attention's lse and delta.
void attention_backward_accumulate(const float* dout, int64_t lddo, const float* q, int64_t ldq, const float* k,
                                   int64_t ldk, const float* v, int64_t ldv, const float* lse, const float* delta,
                                   const AttentionDims& dims, float* dq, int64_t lddq, float* dk, int64_t lddk,
                                   float* dv, int64_t lddv, ThreadPool& pool);

// For tests: the largest scratch (in floats) any single task of the two kernels has asked for since the last
// reset. It stays O(block^2 + block*D + T * H/Hkv), never O(T^2).
int64_t attention_scratch_floats_peak();
void attention_reset_scratch_peak();

}  // namespace memtrain::cpu
