// Attention over a context-parallel sequence (ring attention). Each rank holds the queries, keys and values of its
// chunks (see context_parallel.h); the ranks' key/value blocks travel around the cp ring, one hop per step, and
// every rank folds each visiting block into its queries' output with an online softmax (merging partial outputs
// by their log-sum-exp). Sending the next block overlaps with attending over the current one. Backward visits the
// blocks again in the same order with the final log-sum-exp, and each block's key/value gradient travels with it,
// summed by every rank it visits, back to the rank that owns it.
//
// With one cp rank these are the single-process kernels of core/cpu/attention.h, bitwise. With an all-to-all part
// (cp.a2a_size > 1) they exchange heads around the ring (model/ulysses.h); the arguments stay the token layout.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "model/context_parallel.h"

namespace memtrain::model {

// The local batch (B = cp.slots * sequences, T = tokens per chunk), heads and mask of one attention call. Rows of
// q, k, v, out and their gradients are B*T tokens (chunk-major) at the given strides; lse is (B, H, T).
struct RingAttentionDims {
  int64_t B, T, H, Hkv, D;
  bool causal = true;
  const int32_t* first = nullptr;  // packed rows (ContextParallel::first_keys), with one cp rank only
};

absl::Status ring_attention_forward(const ContextParallel& cp, const float* q, int64_t ldq, const float* k,
                                    int64_t ldk, const float* v, int64_t ldv, const RingAttentionDims& dims,
                                    float* out, int64_t ldo, float* lse);

// Writes (overwrites) dq, dk and dv.
absl::Status ring_attention_backward(const ContextParallel& cp, const float* dout, int64_t lddo, const float* q,
                                     int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                                     const float* out, int64_t ldo, const float* lse, const RingAttentionDims& dims,
                                     float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv);

// Bytes the ring's buffers hold at once (category communication), forward and backward; 0 with one cp rank.
int64_t ring_attention_forward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& dims);
int64_t ring_attention_backward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& dims);

}  // namespace memtrain::model
