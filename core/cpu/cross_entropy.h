// Fused softmax + cross-entropy loss over vocabulary logits, fp32, with its gradient.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// logits, dlogits: (rows, V); targets, losses: (rows). For each row with target >= 0 (and < V):
// loss = logsumexp(row) - row[target]; if dlogits != nullptr it gets (softmax(row) - onehot(target)) * grad_scale
// (dlogits may alias logits). Rows with target < 0 are ignored: loss 0 and a zero dlogits row. losses may be
// nullptr. Returns the sum of the losses, accumulated in double in row order (independent of the thread count).
double softmax_cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t V, float grad_scale,
                             float* dlogits, float* losses, ThreadPool& pool);

}  // namespace memtrain::cpu
