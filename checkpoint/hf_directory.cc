#include "checkpoint/hf_directory.h"

#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_io.h"
#include "core/status.h"

namespace memtrain::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr char kSingle[] = "model.safetensors";
constexpr char kIndex[] = "model.safetensors.index.json";

// transformers refuses safetensors weights whose metadata lacks the framework.
const std::map<std::string, std::string> kMetadata = {{"format", "pt"}};

// The index's weight map, checked: an object of tensor name -> a plain file name in the directory.
absl::StatusOr<std::map<std::string, std::string>> read_index(const std::string& path) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::string text, read_file(path));
  auto bad = [&](const std::string& why) { return absl::DataLossError(absl::StrCat(path, ": ", why)); };
  const nlohmann::json index = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) return bad("not a JSON object");
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) return bad("needs a weight_map object");
  std::map<std::string, std::string> map;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) return bad(absl::StrCat("weight_map['", it.key(), "'] is not a file name"));
    const std::string file = it.value().get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
      return bad(absl::StrCat("weight_map['", it.key(), "'] = '", file, "' is not a file of the directory"));
    map[it.key()] = file;
  }
  if (map.empty()) return bad("weight_map is empty");
  return map;
}

}  // namespace

absl::StatusOr<HfDirectory> read_hf_directory(const std::string& dir, MemCategory category) {
  HfDirectory out;
  MEMTRAIN_ASSIGN_OR_RETURN(out.config_json, read_file((fs::path(dir) / "config.json").string()));
  const std::string index_path = (fs::path(dir) / kIndex).string();
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    MEMTRAIN_ASSIGN_OR_RETURN(SafetensorsFile f, read_safetensors((fs::path(dir) / kSingle).string(), category));
    out.tensors = std::move(f.tensors);
    return out;
  }
  MEMTRAIN_ASSIGN_OR_RETURN(auto map, read_index(index_path));
  std::map<std::string, std::set<std::string>> by_file;
  for (const auto& [name, file] : map) by_file[file].insert(name);
  for (const auto& [file, names] : by_file) {
    const std::string path = (fs::path(dir) / file).string();
    MEMTRAIN_ASSIGN_OR_RETURN(SafetensorsFile f, read_safetensors(path, category));
    std::set<std::string> found;
    for (NamedTensor& t : f.tensors) {
      if (!names.count(t.name)) {
        return absl::DataLossError(absl::StrCat(path, ": holds '", t.name, "', which ", kIndex,
                                                map.count(t.name) ? " assigns to " + map[t.name] : " does not list"));
      }
      found.insert(t.name);
      out.tensors.push_back(std::move(t));
    }
    for (const std::string& name : names) {
      if (!found.count(name))
        return absl::DataLossError(absl::StrCat(path, ": lacks '", name, "', which ", kIndex, " assigns to it"));
    }
  }
  return out;
}

absl::Status write_hf_directory(const std::string& dir, const std::string& config_json,
                                const std::vector<NamedTensor>& tensors, int64_t max_shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  // Greedy shards in tensor order, as transformers splits them.
  std::vector<std::vector<NamedTensor>> shards(1);
  int64_t in_shard = 0, total = 0;
  for (const NamedTensor& t : tensors) {
    const int64_t bytes = t.tensor.nbytes();
    if (!shards.back().empty() && in_shard + bytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back({t.name, t.tensor});
    in_shard += bytes;
    total += bytes;
  }
  MEMTRAIN_RETURN_IF_ERROR(write_file_atomically((fs::path(dir) / "config.json").string(), {config_json + "\n"}));
  // A directory that held the other layout before must not keep a stale index or single file.
  fs::remove(fs::path(dir) / (shards.size() == 1 ? kIndex : kSingle), ec);
  if (shards.size() == 1) return write_safetensors((fs::path(dir) / kSingle).string(), shards[0], kMetadata);
  nlohmann::json map = nlohmann::json::object();
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string file = absl::StrFormat("model-%05d-of-%05d.safetensors", k + 1, shards.size());
    MEMTRAIN_RETURN_IF_ERROR(write_safetensors((fs::path(dir) / file).string(), shards[k], kMetadata));
    for (const NamedTensor& t : shards[k]) map[t.name] = file;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", map}};
  return write_file_atomically((fs::path(dir) / kIndex).string(), {index.dump(2) + "\n"});
}

}  // namespace memtrain::checkpoint
