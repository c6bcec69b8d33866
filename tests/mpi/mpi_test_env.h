// Shared by the tests under mpirun: the World that mpi_test_main.cc created, and inputs every rank can rebuild.
#pragma once

#include <cstdint>

#include "parallel/world.h"

namespace memtrain::parallel::testing {

World& world();

// Rank r's element i for a given seed: a multiple of 1/8 in [-64, 64). Sums over up to 8 ranks stay exact in fp32
// (at most 13 significant bits), so every summation order gives the same bits and tests can compare with ==.
inline float input_value(uint64_t seed, int rank, int64_t i) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(rank) * 0xBF58476D1CE4E5B9ull +
               static_cast<uint64_t>(i) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 29;
  return static_cast<float>(static_cast<int64_t>(x % 1024) - 512) / 8.0f;
}

}  // namespace memtrain::parallel::testing
