// Token shard writer and validating reader. Header (64 bytes, little-endian):
//   [0,8) magic "MTTOKENS"  [8,12) version u32 = 1  [12,16) token dtype u32 (2 = uint16, 4 = uint32)
//   [16,24) token count u64  [24,32) vocab size u64  [32,40) XXH64 of the token bytes
//   [40,48) XXH64 of header bytes [0,40)  [48,64) zero
// then count * dtype bytes of tokens, and nothing after them.
#include "data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/status.h"
#include "core/checksum.h"
#include "core/file_io.h"

namespace memtrain::data {
namespace {

// The format is little-endian and tokens are read in place from the mapping, so the host must be too.
static_assert(std::endian::native == std::endian::little, "token shards are read in place: little-endian only");

constexpr char kMagic[8] = {'M', 'T', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr size_t kOffVersion = 8, kOffDtype = 12, kOffCount = 16, kOffVocab = 24, kOffBodySum = 32,
                 kOffHeaderSum = 40, kOffPadding = 48;
constexpr int64_t kMaxVocab = int64_t{1} << 31;  // tokens are handed out as int32

template <class T> T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T> void store(unsigned char* p, T v) { std::memcpy(p, &v, sizeof(T)); }

absl::Status shard_error(absl::StatusCode code, const std::string& path, absl::string_view why) {
  return absl::Status(code, absl::StrCat(path, ": ", why));
}

std::string hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad16)); }

}  // namespace

absl::Status write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size) {
  if (vocab_size < 1 || vocab_size > kMaxVocab) {
    return shard_error(absl::StatusCode::kInvalidArgument, path,
                       absl::StrCat("vocab size ", vocab_size, " is outside [1, 2^31]"));
  }
  const int width = vocab_size <= 65536 ? 2 : 4;
  const size_t n = tokens.size();
  std::string body(n * width, '\0');
  auto* out = reinterpret_cast<unsigned char*>(body.data());
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= vocab_size) {
      return shard_error(absl::StatusCode::kInvalidArgument, path,
                         absl::StrCat("token ", t, " at index ", i, " is outside the vocabulary [0, ", vocab_size,
                                      ")"));
    }
    if (width == 2) {
      store<uint16_t>(out + 2 * i, static_cast<uint16_t>(t));
    } else {
      store<uint32_t>(out + 4 * i, static_cast<uint32_t>(t));
    }
  }
  unsigned char header[kTokenShardHeaderBytes] = {};
  std::memcpy(header, kMagic, sizeof(kMagic));
  store<uint32_t>(header + kOffVersion, kTokenShardVersion);
  store<uint32_t>(header + kOffDtype, static_cast<uint32_t>(width));
  store<uint64_t>(header + kOffCount, n);
  store<uint64_t>(header + kOffVocab, static_cast<uint64_t>(vocab_size));
  store<uint64_t>(header + kOffBodySum, xxhash64(body.data(), body.size()));
  store<uint64_t>(header + kOffHeaderSum, xxhash64(header, kOffHeaderSum));
  return write_file_atomically(
      path, {absl::string_view(reinterpret_cast<const char*>(header), sizeof(header)), absl::string_view(body)});
}

absl::StatusOr<TokenShard> TokenShard::open(const std::string& path) {
  using absl::StatusCode;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(path, "cannot open token shard", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return errno_error(path, "cannot stat", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return shard_error(StatusCode::kInvalidArgument, path, "not a regular file");
  }
  const auto file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < static_cast<uint64_t>(kTokenShardHeaderBytes)) {
    ::close(fd);
    return shard_error(StatusCode::kDataLoss, path,
                       absl::StrCat("file is ", file_bytes, " bytes, shorter than the ", kTokenShardHeaderBytes,
                                    "-byte token shard header (truncated or empty)"));
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) return errno_error(path, "cannot mmap", map_err);

  // From here the mapping is owned by `shard`, so every error return unmaps it.
  TokenShard shard;
  shard.path_ = path;
  shard.map_ = map;
  shard.map_bytes_ = file_bytes;
  const auto* h = static_cast<const unsigned char*>(map);

  // Checked before the header checksum: a file of another kind, or of a future version whose header differs,
  // should be reported as such rather than as corruption.
  if (std::memcmp(h, kMagic, sizeof(kMagic)) != 0) {
    return shard_error(StatusCode::kInvalidArgument, path,
                       "bad magic (not a memtrain token shard; expected \"MTTOKENS\")");
  }
  const uint32_t version = load<uint32_t>(h + kOffVersion);
  if (version != kTokenShardVersion) {
    return shard_error(StatusCode::kInvalidArgument, path,
                       absl::StrCat("unsupported format version ", version, " (this build reads version ",
                                    kTokenShardVersion, ")"));
  }
  const uint64_t header_sum = load<uint64_t>(h + kOffHeaderSum), header_want = xxhash64(h, kOffHeaderSum);
  if (header_sum != header_want) {
    return shard_error(StatusCode::kDataLoss, path,
                       absl::StrCat("header checksum mismatch (stored ", hex(header_sum), ", computed ",
                                    hex(header_want), "): the header is corrupted"));
  }
  for (size_t i = kOffPadding; i < kTokenShardHeaderBytes; ++i) {
    if (h[i] != 0) return shard_error(StatusCode::kDataLoss, path, "nonzero header padding: the header is corrupted");
  }
  const uint32_t dtype = load<uint32_t>(h + kOffDtype);
  if (dtype != 2 && dtype != 4) {
    return shard_error(StatusCode::kInvalidArgument, path,
                       absl::StrCat("unsupported token dtype code ", dtype, " (2 = uint16, 4 = uint32)"));
  }
  const uint64_t vocab = load<uint64_t>(h + kOffVocab);
  if (vocab == 0 || vocab > static_cast<uint64_t>(kMaxVocab)) {
    return shard_error(StatusCode::kInvalidArgument, path,
                       absl::StrCat("vocab size ", vocab, " in the header is outside [1, 2^31]"));
  }
  const uint64_t count = load<uint64_t>(h + kOffCount);
  const uint64_t body_bytes = file_bytes - kTokenShardHeaderBytes;
  // Compared by division so a huge count cannot overflow count * dtype.
  if (count > body_bytes / dtype || body_bytes != count * dtype) {
    const bool truncated = count > body_bytes / dtype;
    return shard_error(StatusCode::kDataLoss, path,
                       absl::StrCat("file is ", file_bytes, " bytes but the header promises ", kTokenShardHeaderBytes,
                                    " + ", count, " tokens x ", dtype, " bytes",
                                    truncated ? " (truncated)" : " (unexpected trailing bytes)"));
  }
  const unsigned char* body = h + kTokenShardHeaderBytes;
  const uint64_t body_sum = load<uint64_t>(h + kOffBodySum), body_want = xxhash64(body, body_bytes);
  if (body_sum != body_want) {
    return shard_error(StatusCode::kDataLoss, path,
                       absl::StrCat("token checksum mismatch (stored ", hex(body_sum), ", computed ", hex(body_want),
                                    "): the token data is corrupted"));
  }
  // The checksums catch corruption, not crafted files (anyone can compute XXH64), and the trainer indexes embedding
  // tables with these ids: every token is range-checked here (found by fuzzing, tests/fuzz). The max is a
  // vectorizable pass; the offending index is looked for only when it fails.
  auto token_at = [&](uint64_t i) -> uint64_t {
    return dtype == 2 ? load<uint16_t>(body + 2 * i) : load<uint32_t>(body + 4 * i);
  };
  uint64_t max_token = 0;
  if (dtype == 2) {
    for (uint64_t i = 0; i < count; ++i) max_token = std::max<uint64_t>(max_token, load<uint16_t>(body + 2 * i));
  } else {
    for (uint64_t i = 0; i < count; ++i) max_token = std::max<uint64_t>(max_token, load<uint32_t>(body + 4 * i));
  }
  if (count > 0 && max_token >= vocab) {
    uint64_t i = 0;
    while (token_at(i) < vocab) ++i;
    return shard_error(StatusCode::kInvalidArgument, path,
                       absl::StrCat("token ", token_at(i), " at index ", i, " is outside the vocabulary [0, ", vocab,
                                    ") the header declares"));
  }
  shard.tokens_ = body;
  shard.count_ = static_cast<int64_t>(count);
  shard.vocab_size_ = static_cast<int64_t>(vocab);
  shard.width_ = static_cast<int>(dtype);
  return shard;
}

TokenShard::TokenShard(TokenShard&& other) noexcept { *this = std::move(other); }

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    count_ = std::exchange(other.count_, 0);
    vocab_size_ = std::exchange(other.vocab_size_, 0);
    width_ = std::exchange(other.width_, 0);
  }
  return *this;
}

TokenShard::~TokenShard() { release(); }

void TokenShard::release() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
}

int32_t TokenShard::operator[](int64_t i) const {
  MEMTRAIN_CHECK(i >= 0 && i < count_);
  if (width_ == 2) return load<uint16_t>(tokens_ + 2 * i);
  return static_cast<int32_t>(load<uint32_t>(tokens_ + 4 * i));
}

void TokenShard::copy(int64_t offset, int64_t n, int32_t* out) const {
  MEMTRAIN_CHECK(offset >= 0 && n >= 0 && offset + n <= count_);
  if (width_ == 2) {
    const unsigned char* p = tokens_ + 2 * offset;
    for (int64_t i = 0; i < n; ++i) out[i] = load<uint16_t>(p + 2 * i);
  } else {
    const unsigned char* p = tokens_ + 4 * offset;
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(load<uint32_t>(p + 4 * i));
  }
}

}  // namespace memtrain::data
