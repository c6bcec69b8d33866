// Deterministic column sums over rows (dweight, dbias): rows are cut into chunks that depend only on the problem
// size, each chunk sums its rows in order into its own partial row, and the partials are then added in chunk order.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// Row chunks for a (rows, C) reduction: at least 8 rows and ~16K elements per chunk so that waking a thread pays
// off, and at most 64 chunks so that the partial rows stay small. A function of (rows, C) only, never of the pool.
struct RowChunks {
  int64_t grain;  // rows per chunk (the last may be shorter)
  int64_t count;  // number of chunks
};
RowChunks row_chunks(int64_t rows, int64_t C);

// out[c] += sum over k = 0..chunks-1, in that order, of partials[k * C + c]. Splits the columns across `pool`.
void add_partials(const float* partials, int64_t chunks, int64_t C, float* out, ThreadPool& pool);

// A per-thread buffer of at least n floats that kernels reuse from call to call (fresh pages cost page faults).
// Contents are unspecified; one kernel call at a time per thread may hold it.
float* partials_scratch(int64_t n);

}  // namespace memtrain::cpu
