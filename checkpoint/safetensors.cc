// safetensors writer and reader: the format's rules plus memtrain's checksums (data; length prefix + header).
#include "checkpoint/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/checksum.h"
#include "core/file_io.h"
#include "core/status.h"

namespace memtrain::checkpoint {
namespace {
constexpr char kChecksumKey[] = "memtrain_xxh64";
// XXH64 of the 8-byte length prefix + the header JSON (padding included) with this key's 16 hex digits read as
// '0's: a flip anywhere before the data section changes it (the data checksum above covers the rest).
constexpr char kHeaderChecksumKey[] = "memtrain_header_xxh64";
// How the key and its value appear in the raw header. Inside a JSON string every '"' is escaped as '\"', so this
// text (a quote right after "xxh64") can only be the key itself followed by a string value: at most one match in
// a file we wrote, whatever the tensor names and user metadata hold.
constexpr char kHeaderChecksumPattern[] = "\"memtrain_header_xxh64\":\"";
constexpr size_t kHexDigits = 16;
constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

const char* st_dtype(DType dt) {
  switch (dt) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kI32: return "I32";
    case DType::kU16: return "U16";
  }
  return "?";
}

bool dtype_from_st(const std::string& s, DType* out) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kU8, DType::kI32, DType::kU16}) {
    if (s == st_dtype(dt)) {
      *out = dt;
      return true;
    }
  }
  return false;
}
// XXH64 over the tensors' own XXH64s in data order (so the writer never copies the tensors into one buffer).
std::string data_checksum(const std::vector<absl::string_view>& pieces) {
  std::vector<uint64_t> hashes;
  for (absl::string_view p : pieces) hashes.push_back(xxhash64(p.data(), p.size()));
  return absl::StrFormat("%016x", xxhash64(hashes.data(), hashes.size() * sizeof(uint64_t)));
}

// XXH64 over `prefix_and_header` (the length prefix and the header JSON) with the checksum's digits at `at`
// taken as '0's.
std::string header_checksum(std::string prefix_and_header, size_t at) {
  prefix_and_header.replace(at, kHexDigits, kHexDigits, '0');
  return absl::StrFormat("%016x", xxhash64(prefix_and_header.data(), prefix_and_header.size()));
}

bool is_lower_hex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
}  // namespace

absl::Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  std::vector<absl::string_view> data;
  for (const NamedTensor& t : tensors) {
    const uint64_t bytes = t.tensor.nbytes();
    header[t.name] = {{"dtype", st_dtype(t.tensor.dtype())},
                      {"shape", t.tensor.shape()},
                      {"data_offsets", {offset, offset + bytes}}};
    data.emplace_back(static_cast<const char*>(t.tensor.raw()), bytes);
    offset += bytes;
  }
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  meta[kChecksumKey] = data_checksum(data);
  meta[kHeaderChecksumKey] = std::string(kHexDigits, '0');  // filled in below, once the header bytes are final
  header["__metadata__"] = meta;
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string head(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) head[i] = static_cast<char>(n >> (8 * i));
  head += json;
  const size_t key = head.find(kHeaderChecksumPattern);
  MEMTRAIN_CHECK_MSG(key != std::string::npos, "safetensors header lost its checksum key");
  const size_t at = key + sizeof(kHeaderChecksumPattern) - 1;
  head.replace(at, kHexDigits, header_checksum(head, at));
  std::vector<absl::string_view> pieces = {head};
  pieces.insert(pieces.end(), data.begin(), data.end());
  return write_file_atomically(path, pieces);
}

absl::StatusOr<SafetensorsFile> read_safetensors(const std::string& path, MemCategory category) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  auto bad = [&](absl::string_view why) { return absl::DataLossError(absl::StrCat(path, ": ", why)); };
  if (bytes.size() < 8) return bad("too short for a safetensors header");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n > kMaxHeaderBytes || n > bytes.size() - 8) return bad(absl::StrCat("header length ", n, " exceeds the file"));
  // The header checksum is checked on the raw bytes before they are parsed, so a flip in the header is reported
  // as what it is rather than as whichever structural rule it happens to break.
  const absl::string_view head(bytes.data(), 8 + n);
  const size_t key = head.find(kHeaderChecksumPattern);
  bool header_verified = false;
  if (key != absl::string_view::npos) {
    const size_t at = key + sizeof(kHeaderChecksumPattern) - 1;
    if (head.find(kHeaderChecksumPattern, key + 1) != absl::string_view::npos || at + kHexDigits >= head.size() ||
        head[at + kHexDigits] != '"' || !is_lower_hex(head.substr(at, kHexDigits))) {
      return bad("header checksum is malformed");
    }
    if (header_checksum(std::string(head), at) != head.substr(at, kHexDigits)) return bad("header checksum mismatch");
    header_verified = true;
  }
  nlohmann::json header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + n, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return bad("header is not a JSON object");
  const char* data = bytes.data() + 8 + n;
  const uint64_t data_bytes = bytes.size() - 8 - n;

  SafetensorsFile out;
  struct Span { uint64_t begin, end; };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) return bad("__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) return bad(absl::StrCat("__metadata__.", m.key(), " is not a string"));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const nlohmann::json& e = it.value();
    const std::string where = absl::StrCat("tensor '", it.key(), "'");
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets") ||
        !e["dtype"].is_string() || !e["shape"].is_array() || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2) {
      return bad(absl::StrCat(where, ": needs dtype, shape and two data_offsets"));
    }
    DType dt;
    if (!dtype_from_st(e["dtype"].get<std::string>(), &dt))
      return bad(absl::StrCat(where, ": unsupported dtype ", e["dtype"].get<std::string>()));
    // The product of the nonzero dimensions is bounded, checked before each multiply: a running product could wrap
    // ([2^40, 2^40] is 0 mod 2^64), and a zero dimension must not hide the others, which code downstream multiplies
    // (shape_numel in file order, row sizes). Found by fuzzing (tests/fuzz).
    constexpr uint64_t kMaxElements = uint64_t{1} << 40;
    Shape shape;
    uint64_t nonzero = 1;
    bool empty = false;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) return bad(absl::StrCat(where, ": bad shape"));
      const uint64_t dim = d.get<uint64_t>();
      if (dim > kMaxElements || (dim != 0 && nonzero > kMaxElements / dim))
        return bad(absl::StrCat(where, ": bad shape"));
      shape.push_back(static_cast<int64_t>(dim));
      if (dim == 0) empty = true;
      else nonzero *= dim;
    }
    const uint64_t numel = empty ? 0 : nonzero;
    const auto& off = e["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) return bad(absl::StrCat(where, ": bad data_offsets"));
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_bytes || end - begin != numel * dtype_size(dt))
      return bad(absl::StrCat(where, ": data_offsets [", begin, ", ", end, ") do not match its shape or the file"));
    spans.push_back({begin, end});
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor t, Tensor::empty(shape, dt, category));
    std::memcpy(t.raw(), data + begin, end - begin);
    out.tensors.push_back({it.key(), std::move(t)});
  }
  // The tensors must tile the data section with no gaps or overlaps (the format's own rule).
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t at = 0;
  for (const Span& s : spans) {
    if (s.begin != at) return bad("tensor data overlaps or leaves gaps");
    at = s.end;
  }
  if (at != data_bytes) return bad(absl::StrCat("data section holds ", data_bytes, " bytes, tensors cover ", at));
  // memtrain writes both checksums or neither (files from other tools): a data checksum without a verified header
  // checksum means the header key itself was damaged (a flip in its name), so the header cannot be trusted.
  // A header checksum key that the raw search missed (spelt with JSON escapes) is rejected the same way.
  if (!header_verified && (out.metadata.count(kChecksumKey) || out.metadata.count(kHeaderChecksumKey)))
    return bad("header checksum missing");
  auto sum = out.metadata.find(kChecksumKey);
  if (sum != out.metadata.end()) {
    std::vector<absl::string_view> pieces;
    for (const Span& s : spans) pieces.emplace_back(data + s.begin, s.end - s.begin);
    if (data_checksum(pieces) != sum->second) return bad("checksum mismatch");
  }
  return out;
}

}  // namespace memtrain::checkpoint
