// Rotary position embedding (LLaMA's q/k rotation), fp32, forward and backward, in place.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// Hugging Face LLaMA convention (rotate_half): element i of a head pairs with element i + D/2, rotated by
// angle = pos * inv_freq[i], inv_freq[i] = 1 / theta^(2i/D), i < D/2. Angles are formed in fp32 as HF forms them.
// x: `tokens` rows; row r holds H heads of D floats (D even) at x + r*ld + h*D. pos: (tokens), >= 0. In place.
void rope_forward(float* x, int64_t tokens, int64_t H, int64_t D, int64_t ld, const int32_t* pos, double theta,
                  ThreadPool& pool);

// The inverse rotation (the transpose of forward's), in place: turns dy into dx. Same layout as rope_forward.
void rope_backward(float* dx, int64_t tokens, int64_t H, int64_t D, int64_t ld, const int32_t* pos, double theta,
                   ThreadPool& pool);

}  // namespace memtrain::cpu
