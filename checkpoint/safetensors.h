// safetensors files (Hugging Face's format: an 8-byte header length, a JSON header, raw little-endian tensors), the
// format memtrain saves trained weights in. memtrain adds two checksums to the header's __metadata__ (string
// values, so other readers still accept the file): "memtrain_xxh64" over the data section and
// "memtrain_header_xxh64" over the length prefix and header bytes, so that any corruption is caught when the file
// is read back. Files from other tools carry neither and load unchecked.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace memtrain::checkpoint {

struct NamedTensor {
  std::string name;  // "transformer.h.0.attn.c_attn.weight"
  Tensor tensor;
};

// Written atomically (temporary name, fsync, rename): a failed write leaves any previous file intact.
absl::Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

struct SafetensorsFile {
  std::vector<NamedTensor> tensors;  // in file order, category `category` given to read_safetensors
  std::map<std::string, std::string> metadata;
};
// Validates the header (sizes, dtypes, offsets that tile the data section exactly) and, when present, both
// checksums (a file with only one of them is rejected: memtrain writes both); every error names the path.
absl::StatusOr<SafetensorsFile> read_safetensors(const std::string& path, MemCategory category);

}  // namespace memtrain::checkpoint
