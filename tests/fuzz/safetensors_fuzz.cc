// Fuzz target for safetensors files (checkpoint::read_safetensors: 8-byte length, JSON header via nlohmann::json,
// offsets that tile the data section, optional XXH64 in __metadata__). The input is written to a scratch file and
// read; a file that is accepted must write back (write_safetensors) and read again to the same tensors and metadata.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "checkpoint/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memtrain;
  const std::string path = fuzz::scratch_path("safetensors");
  fuzz::write_scratch(path, data, size);
  absl::StatusOr<checkpoint::SafetensorsFile> file = checkpoint::read_safetensors(path, MemCategory::kWorkspace);
  if (!file.ok()) {
    if (file.status().message().find(path) == std::string::npos)
      fuzz::fail("a safetensors error does not name the path");
    return 0;
  }

  // Round trip through the writer (which adds its own checksums to the metadata).
  const std::string again_path = fuzz::scratch_path("safetensors_again");
  if (!checkpoint::write_safetensors(again_path, file->tensors, file->metadata).ok())
    fuzz::fail("cannot write back an accepted file");
  absl::StatusOr<checkpoint::SafetensorsFile> again = checkpoint::read_safetensors(again_path, MemCategory::kWorkspace);
  if (!again.ok()) {
    std::fprintf(stderr, "%s\n", std::string(again.status().ToString()).c_str());
    fuzz::fail("an accepted file, written back, does not read again");
  }
  if (again->tensors.size() != file->tensors.size()) fuzz::fail("round trip changed the tensor count");
  for (size_t i = 0; i < file->tensors.size(); ++i) {
    const Tensor& a = file->tensors[i].tensor;
    const Tensor& b = again->tensors[i].tensor;
    if (file->tensors[i].name != again->tensors[i].name || a.dtype() != b.dtype() || a.shape() != b.shape() ||
        a.nbytes() != b.nbytes() || (a.nbytes() > 0 && std::memcmp(a.raw(), b.raw(), a.nbytes()) != 0))
      fuzz::fail("round trip changed a tensor");
  }
  for (const auto& [k, v] : file->metadata) {
    if (k.rfind("memtrain_", 0) == 0) continue;  // the writer's own checksum keys, recomputed on every write
    auto it = again->metadata.find(k);
    if (it == again->metadata.end() || it->second != v) fuzz::fail("round trip changed the metadata");
  }
  return 0;
}
