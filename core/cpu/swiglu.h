// SwiGLU gating (LLaMA's MLP: silu(gate_proj x) * up_proj x), fp32, forward and backward.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// gate, up, y: n elements. y = silu(gate) * up with silu(g) = g * sigmoid(g). y may alias gate or up.
void swiglu_forward(const float* gate, const float* up, float* y, int64_t n, ThreadPool& pool);
// dgate = dy * up * silu'(gate), dup = dy * silu(gate); both written. dgate may alias gate or dy, dup may alias up
// or dy (but not dgate): each element's inputs are read before its outputs are stored.
void swiglu_backward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n,
                     ThreadPool& pool);

}  // namespace memtrain::cpu
