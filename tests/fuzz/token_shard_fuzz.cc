// Fuzz target for token shards (data::TokenShard::open: header, body, checksums, size rules). The input is written
// to a scratch file and opened; an accepted shard has every token read back with copy() and operator[].
// Built twice: fuzz_token_shard takes the bytes as they are (so it mostly exercises the checks before and of the
// checksums); fuzz_token_shard_repaired (MEMTRAIN_FUZZ_REPAIR_CHECKSUMS=1) first rewrites both XXH64 fields of a
// >= 64-byte input to match, so the structural checks after the checksums and the reads are reached too.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/checksum.h"
#include "data/token_shard.h"
#include "tests/fuzz/fuzz_util.h"

#ifndef MEMTRAIN_FUZZ_REPAIR_CHECKSUMS
#define MEMTRAIN_FUZZ_REPAIR_CHECKSUMS 0
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memtrain;
  const std::string path = fuzz::scratch_path(MEMTRAIN_FUZZ_REPAIR_CHECKSUMS ? "shard_repaired" : "shard");
#if MEMTRAIN_FUZZ_REPAIR_CHECKSUMS
  // Layout (data/token_shard.cc): [32,40) XXH64 of the bytes after the 64-byte header, [40,48) XXH64 of [0,40).
  std::vector<uint8_t> fixed(data, data + size);
  if (size >= static_cast<size_t>(data::kTokenShardHeaderBytes)) {
    const uint64_t body = xxhash64(fixed.data() + data::kTokenShardHeaderBytes, size - data::kTokenShardHeaderBytes);
    std::memcpy(fixed.data() + 32, &body, 8);
    const uint64_t header = xxhash64(fixed.data(), 40);
    std::memcpy(fixed.data() + 40, &header, 8);
  }
  fuzz::write_scratch(path, fixed.data(), fixed.size());
#else
  fuzz::write_scratch(path, data, size);
#endif

  absl::StatusOr<data::TokenShard> shard = data::TokenShard::open(path);
  if (!shard.ok()) {
    if (shard.status().message().find(path) == std::string::npos) fuzz::fail("a shard error does not name the path");
    return 0;
  }
  const int64_t n = shard->size();
  if (n < 0 || (shard->token_bytes() != 2 && shard->token_bytes() != 4)) fuzz::fail("accepted shard: bad size/width");
  if (static_cast<uint64_t>(n) * shard->token_bytes() + data::kTokenShardHeaderBytes != size)
    fuzz::fail("accepted shard: token count does not match the file size");
  if (shard->vocab_size() < 1 || shard->vocab_size() > (int64_t{1} << 31)) fuzz::fail("accepted shard: bad vocab");
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  shard->copy(0, n, tokens.data());
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = tokens[static_cast<size_t>(i)];
    if ((*shard)[i] != t) fuzz::fail("operator[] disagrees with copy()");
    // The trainer indexes embedding tables with these ids, trusting open(): a crafted file carries valid
    // checksums as easily as a genuine one, so the range must be checked on the tokens themselves.
    if (t < 0 || t >= shard->vocab_size()) fuzz::fail("accepted shard holds a token outside [0, vocab_size)");
  }
  // Moving must keep the mapping valid.
  data::TokenShard moved = std::move(*shard);
  if (n > 0 && moved[n - 1] != tokens.back()) fuzz::fail("moved shard reads differently");
  return 0;
}
