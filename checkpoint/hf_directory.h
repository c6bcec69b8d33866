// Hugging Face model directories: config.json plus the weights, either in one model.safetensors or in shards that
// model.safetensors.index.json lists ({"weight_map": {tensor name: shard file}}). What transformers'
// save_pretrained writes and from_pretrained reads. The config is kept as JSON text: what it means per
// architecture is the trainer's business.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/safetensors.h"

namespace memtrain::checkpoint {

struct HfDirectory {
  std::string config_json;
  std::vector<NamedTensor> tensors;  // shard by shard, each in its file's order
};

// Reads every tensor. The index must name only plain files of `dir`, and every shard must hold exactly the tensors
// the index assigns to it (none twice, none missing); every safetensors header is validated before its data is
// used. Errors name the file.
absl::StatusOr<HfDirectory> read_hf_directory(const std::string& dir, MemCategory category);

// Writes config.json and the tensors (in the given order) as model.safetensors, or, when they exceed
// max_shard_bytes, as model-0000k-of-0000n.safetensors shards with an index. A tensor larger than the limit gets a
// shard of its own. Every file is written atomically; the index is written last.
absl::Status write_hf_directory(const std::string& dir, const std::string& config_json,
                                const std::vector<NamedTensor>& tensors, int64_t max_shard_bytes);

}  // namespace memtrain::checkpoint
