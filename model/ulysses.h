// Ulysses: the all-to-all around attention in unified sequence parallelism (USP; context_parallel.h). Rank u of an
// a2a group of U ranks holds piece u (p tokens) of each of its chunks for every head; attention needs whole chunks
// (c = U * p tokens), so before it every rank sends heads [v H/U, (v+1) H/U) of its rows to peer v and receives
// its own heads of every peer's piece: (slots * B, c) rows with H/U heads, which then ring over the cp ring as
// ring_attention.h does. After it the output goes back the same way. The log-sum-exps travel too, so the saved
// tensors and the caller keep the token layout (every activation policy works unchanged); backward exchanges what
// it needs again.
//
// Grouped-query heads: with Hkv >= U each rank gets Hkv / U kv heads, the ones its query heads use. With Hkv < U
// each kv head is repeated U / Hkv times on the way (peer v gets kv head v * Hkv / U), and backward sums the copies'
// gradients. Needs H % U == 0 and Hkv % U == 0 or U % Hkv == 0 (trainer checks the config).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "model/context_parallel.h"
#include "model/ring_attention.h"

namespace memtrain::model {

// ring_attention_forward/backward with cp.a2a_size > 1 (they call these); dims are the token layout's.
absl::Status ulysses_attention_forward(const ContextParallel& cp, const float* q, int64_t ldq, const float* k,
                                       int64_t ldk, const float* v, int64_t ldv, const RingAttentionDims& dims,
                                       float* out, int64_t ldo, float* lse);
absl::Status ulysses_attention_backward(const ContextParallel& cp, const float* dout, int64_t lddo, const float* q,
                                        int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                                        const float* out, int64_t ldo, const float* lse, const RingAttentionDims& dims,
                                        float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv);

// Bytes held at once (category communication): the head-layout tensors, plus the larger of an exchange's send and
// receive buffers and the ring's own buffers.
int64_t ulysses_forward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& dims);
int64_t ulysses_backward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& dims);

// Whether U = a2a ranks can split h query heads and hkv kv heads (this rank's, after tp); empty when they can.
std::string ulysses_head_mismatch(int64_t h, int64_t hkv, int a2a);

}  // namespace memtrain::model
