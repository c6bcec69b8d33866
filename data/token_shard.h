// Token shard (.bin): the file `memtrain prepare` writes and the trainer memory-maps. Layout in token_shard.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace memtrain::data {

inline constexpr int64_t kTokenShardHeaderBytes = 64;
inline constexpr uint32_t kTokenShardVersion = 1;

// Stores tokens as uint16 when vocab_size <= 65536, else uint32. Every token must lie in [0, vocab_size) and
// vocab_size in [1, 2^31]. Crash-safe: written to path + ".tmp", fsynced, then renamed over `path`.
absl::Status write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size);

// A read-only mapping of a shard, validated in full by open(): magic, version, dtype, both checksums, exact size,
// and every token < vocab_size (checked token by token: the checksums catch corruption, not a crafted file).
class TokenShard {
 public:
  static absl::StatusOr<TokenShard> open(const std::string& path);

  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  ~TokenShard();

  int64_t size() const { return count_; }  // tokens
  int64_t vocab_size() const { return vocab_size_; }
  int token_bytes() const { return width_; }  // 2 or 4
  const std::string& path() const { return path_; }

  int32_t operator[](int64_t i) const;
  // out[0, n) = tokens[offset, offset + n) as int32; the range must lie inside the shard.
  void copy(int64_t offset, int64_t n, int32_t* out) const;

 private:
  TokenShard() = default;
  void release();

  std::string path_;
  void* map_ = nullptr;  // whole file, PROT_READ
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;  // map_ + header
  int64_t count_ = 0, vocab_size_ = 0;
  int width_ = 0;
};

}  // namespace memtrain::data
