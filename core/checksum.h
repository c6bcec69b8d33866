// 64-bit checksum for the files memtrain writes (token shards, weights): XXH64 (xxHash, seed 0), fast enough to verify a 100 MB shard in milliseconds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memtrain {

uint64_t xxhash64(const void* data, size_t bytes, uint64_t seed = 0);

}  // namespace memtrain
