// Token (and learned position) embedding lookup, fp32, forward and backward.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// ids: (n) in [0, V) (the caller checks); table: (V, C); out: (n, C). out[i, :] = table[ids[i], :], or += when
// `accumulate` (GPT-2 adds the position embedding onto the token embedding). An id < 0 stands for a row held
// elsewhere (a vocabulary-parallel shard): it reads as zeros.
void embedding_forward(const int32_t* ids, const float* table, int64_t n, int64_t C, float* out, bool accumulate,
                       ThreadPool& pool);

// dtable (V, C) [ids[i], :] += dout (n, C) [i, :]; ids < 0 are skipped. Each dtable element sums its rows in index
// order whatever the thread count, so results are bitwise reproducible.
void embedding_backward(const int32_t* ids, const float* dout, int64_t n, int64_t C, int64_t V, float* dtable,
                        ThreadPool& pool);

}  // namespace memtrain::cpu
