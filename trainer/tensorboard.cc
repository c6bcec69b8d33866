// TensorBoard event files: CRC-32C, the protocol-buffer wire encoding of Event/Summary, and TFRecord framing.
#include "trainer/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_io.h"
#include "core/memory.h"
#include "core/status.h"

namespace memtrain::trainer {
namespace {

// The reflected Castagnoli polynomial's byte table.
constexpr std::array<uint32_t, 256> kCrc32cTable = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}();

// TFRecord stores CRCs rotated and offset, since a CRC of data that itself holds CRCs is weak.
uint32_t masked_crc(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

// Protocol-buffer wire format: a field is a varint key (number << 3 | wire type) and its value.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, field << 3 | type); }
template <class T> void put_fixed(std::string& out, T v) {  // little-endian, as x86 stores it
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  out.append(bytes, sizeof(T));
}
void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// tensorflow.Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5 (Summary).
std::string event(int64_t step, const std::string* file_version, const std::string* summary) {
  const double wall_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string e;
  put_key(e, 1, kFixed64);
  put_fixed(e, wall_time);
  put_key(e, 2, kVarint);
  put_varint(e, static_cast<uint64_t>(step));
  if (file_version != nullptr) put_bytes(e, 3, *file_version);
  if (summary != nullptr) put_bytes(e, 5, *summary);
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

absl::StatusOr<TensorBoardLog> TensorBoardLog::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return errno_error(dir, "cannot create the directory", ec.value());
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  const long long seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string path = absl::StrFormat("%s/events.out.tfevents.%010lld.%s.%d", dir, seconds, host, ::getpid());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(path, "cannot create", errno);
  TensorBoardLog log(fd, path);
  const std::string version = "brain.Event:2";
  MEMTRAIN_RETURN_IF_ERROR(log.write_record(event(0, &version, nullptr)));
  return log;
}

TensorBoardLog::~TensorBoardLog() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status TensorBoardLog::write_record(const std::string& event) {
  std::string frame;
  const uint64_t length = event.size();
  put_fixed(frame, length);
  put_fixed(frame, masked_crc(frame.data(), sizeof(length)));
  frame += event;
  put_fixed(frame, masked_crc(event.data(), event.size()));
  return append_whole(fd_, path_, frame, &size_);
}

absl::Status TensorBoardLog::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  // tensorflow.Summary: repeated Value value = 1; Value: tag = 1 (string), simple_value = 2 (float).
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_key(value, 2, kFixed32);
    put_fixed(value, static_cast<float>(v));
    put_bytes(summary, 1, value);
  }
  return write_record(event(step, nullptr, &summary));
}

absl::Status TensorBoardLog::log_step(const StepMetrics& m) {
  std::vector<std::pair<std::string, double>> v = {
      {"train/loss", m.loss},
      {"train/lr", m.lr},
      {"train/grad_norm", m.grad_norm},
      {"train/tokens_per_s", m.tokens_per_s},
      {"train/mfu", m.mfu},
      {"time/step_ms", m.step_ms},
      {"time/compute_ms", m.compute_ms},
      {"time/comm_ms", m.comm_ms},
      {"time/io_ms", m.io_ms},
      {"comm/bytes_per_step", static_cast<double>(m.comm_bytes)},
  };
  for (int c = 0; c < kNumMemCategories; ++c) {
    v.emplace_back(absl::StrCat("memory/", mem_category_name(static_cast<MemCategory>(c))),
                   static_cast<double>(m.mem.peak[c]));
  }
  return scalars(m.step, v);
}

absl::Status TensorBoardLog::log_eval(int64_t step, double val_loss) { return scalars(step, {{"val/loss", val_loss}}); }

}  // namespace memtrain::trainer
