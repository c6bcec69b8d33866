#include "trainer/peft_adapter.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/file_io.h"
#include "core/status.h"
#include "model/lora.h"
#include "model/model.h"

namespace memtrain::trainer {
namespace {

using checkpoint::NamedTensor;
using nlohmann::json;

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kWeightsFile[] = "adapter_model.safetensors";

std::string path_in(const std::string& dir, const char* file) { return (std::filesystem::path(dir) / file).string(); }

// A config key that must be absent, null or `off` (a PEFT feature memtrain's adapters do not have).
absl::Status require_off(const json& j, const std::string& file, const char* key, const json& off) {
  if (!j.contains(key) || j[key].is_null() || j[key] == off) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", key, ": ", j[key].dump(), " is not supported"));
}

}  // namespace

absl::Status write_peft_adapter(const std::string& dir, const model::ParamSet& tuned, const model::ModelConfig& m) {
  const model::LoraSpec* spec = tuned.lora();
  MEMTRAIN_CHECK_MSG(spec != nullptr, "write_peft_adapter needs a fine-tuned parameter set");
  std::vector<NamedTensor> tensors;
  for (const model::ParamSet* set : {&tuned, static_cast<const model::ParamSet*>(tuned.frozen_set())}) {
    for (const auto& p : set->all())
      if (p->adapter) tensors.push_back({kPeftPrefix + p->name, p->value});
  }
  const double alpha = spec->alpha;
  const json config = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", m.from_hf.empty() ? json(nullptr) : json(m.from_hf)},
      {"r", spec->r},
      {"lora_alpha", alpha == std::floor(alpha) ? json(static_cast<int64_t>(alpha)) : json(alpha)},
      {"lora_dropout", spec->dropout},
      {"target_modules", spec->target_modules},
      {"fan_in_fan_out", !m.is_llama()},  // GPT-2's Conv1D stores (in, out)
      {"bias", "none"},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"modules_to_save", nullptr},
      {"use_rslora", false},
      {"use_dora", false},
      {"rank_pattern", json::object()},
      {"alpha_pattern", json::object()},
  };
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return errno_error(dir, "cannot create", ec.value());
  MEMTRAIN_RETURN_IF_ERROR(checkpoint::write_safetensors(path_in(dir, kWeightsFile), tensors, {{"format", "pt"}}));
  const std::string text = config.dump(2) + "\n";
  return write_file_atomically(path_in(dir, kConfigFile), {text});
}

absl::StatusOr<PeftAdapter> read_peft_adapter(const std::string& dir) {
  const std::string config_path = path_in(dir, kConfigFile);
  MEMTRAIN_ASSIGN_OR_RETURN(std::string text, read_file(config_path));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(config_path + ": not a JSON object");
  auto bad = [&](const char* key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", key, ": ", why));
  };
  if (!j.contains("peft_type") || j["peft_type"] != "LORA") return bad("peft_type", "must be \"LORA\"");
  PeftAdapter a;
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() <= 0)
    return bad("r", "missing or not a positive integer");
  a.spec.r = j["r"].get<int64_t>();
  a.spec.alpha = j.contains("lora_alpha") && j["lora_alpha"].is_number() ? j["lora_alpha"].get<double>() : 8.0;
  if (j.contains("lora_dropout") && j["lora_dropout"].is_number()) a.spec.dropout = j["lora_dropout"].get<double>();
  if (!j.contains("target_modules") || !j["target_modules"].is_array())
    return bad("target_modules", "must be a list of module names (a regular expression is not supported)");
  for (const json& t : j["target_modules"]) {
    if (!t.is_string()) return bad("target_modules", "must be a list of strings");
    a.spec.target_modules.push_back(t.get<std::string>());
  }
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
    a.base_model = j["base_model_name_or_path"].get<std::string>();
  MEMTRAIN_RETURN_IF_ERROR(require_off(j, config_path, "use_rslora", false));
  MEMTRAIN_RETURN_IF_ERROR(require_off(j, config_path, "use_dora", false));
  MEMTRAIN_RETURN_IF_ERROR(require_off(j, config_path, "bias", "none"));
  MEMTRAIN_RETURN_IF_ERROR(require_off(j, config_path, "modules_to_save", json::array()));
  MEMTRAIN_RETURN_IF_ERROR(require_off(j, config_path, "rank_pattern", json::object()));
  MEMTRAIN_RETURN_IF_ERROR(require_off(j, config_path, "alpha_pattern", json::object()));

  const std::string weights_path = path_in(dir, kWeightsFile);
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoint::SafetensorsFile file,
                            checkpoint::read_safetensors(weights_path, MemCategory::kWorkspace));
  for (NamedTensor& t : file.tensors) {
    if (!absl::StartsWith(t.name, kPeftPrefix) ||
        !(absl::EndsWith(t.name, ".lora_A.weight") || absl::EndsWith(t.name, ".lora_B.weight")))
      return absl::InvalidArgumentError(absl::StrCat(weights_path, ": '", t.name, "' is not a LoRA tensor (",
                                                     kPeftPrefix, "<module>.lora_A.weight or .lora_B.weight)"));
    Tensor f32 = t.tensor;
    if (t.tensor.dtype() != DType::kF32) {
      MEMTRAIN_ASSIGN_OR_RETURN(f32, Tensor::empty(t.tensor.shape(), DType::kF32, MemCategory::kWorkspace));
      convert(t.tensor.raw(), t.tensor.dtype(), f32.raw(), DType::kF32, t.tensor.numel());
    }
    a.tensors.push_back({t.name.substr(std::string(kPeftPrefix).size()), std::move(f32)});
  }
  return a;
}

absl::Status copy_adapter_tensors(const PeftAdapter& adapter, const std::string& dir, model::ParamSet& tuned) {
  std::map<std::string, const Tensor*> in_file;
  for (const NamedTensor& t : adapter.tensors) in_file[t.name] = &t.tensor;
  for (model::ParamSet* set : {&tuned, tuned.frozen_set()}) {
    for (const auto& p : set->all()) {
      if (!p->adapter) continue;
      auto it = in_file.find(p->name);
      if (it == in_file.end())
        return absl::InvalidArgumentError(absl::StrCat(dir, ": missing ", kPeftPrefix, p->name));
      if (it->second->shape() != p->shape)
        return absl::InvalidArgumentError(absl::StrCat(dir, ": ", kPeftPrefix, p->name, " is ",
                                                       shape_string(it->second->shape()), ", the model needs ",
                                                       shape_string(p->shape)));
      std::copy_n(it->second->f32(), p->value.numel(), p->value.f32());
      in_file.erase(it);
    }
  }
  if (!in_file.empty())
    return absl::InvalidArgumentError(absl::StrCat(dir, ": ", kPeftPrefix, in_file.begin()->first,
                                                   " is not an adapter of the model's target modules"));
  return absl::OkStatus();
}

absl::StatusOr<ConvertSummary> merge_peft_adapter(const std::string& adapter_dir, std::string base_dir,
                                                  const std::string& out_dir, std::optional<DType> dtype,
                                                  int64_t max_shard_bytes, bool nf4_base) {
  MEMTRAIN_ASSIGN_OR_RETURN(PeftAdapter adapter, read_peft_adapter(adapter_dir));
  if (base_dir.empty()) base_dir = adapter.base_model;
  if (base_dir.empty())
    return absl::InvalidArgumentError(absl::StrCat(adapter_dir, ": the adapter names no base model "
                                                   "(base_model_name_or_path): give it with --base"));
  MEMTRAIN_ASSIGN_OR_RETURN(HfModel base, read_hf_model(base_dir, MemCategory::kWorkspace));
  const model::ModelConfig& m = base.model;
  if (absl::Status s = adapter.spec.validate_for(m.arch); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat(adapter_dir, ": ", s.message()));

  model::ParamSet tuned;
  tuned.fine_tune(adapter.spec);
  MEMTRAIN_RETURN_IF_ERROR(model::Model::create(m, tuned).status());
  MEMTRAIN_RETURN_IF_ERROR(tuned.allocate());
  MEMTRAIN_RETURN_IF_ERROR(tuned.frozen_set()->allocate());
  for (const auto& p : tuned.frozen_set()->all()) {
    const Tensor& src = base.params.at(p->name);
    std::copy_n(src.f32(), src.numel(), p->value.f32());
  }
  if (nf4_base) MEMTRAIN_RETURN_IF_ERROR(tuned.frozen_set()->quantize_frozen_projections());
  MEMTRAIN_RETURN_IF_ERROR(copy_adapter_tensors(adapter, adapter_dir, tuned));
  model::ParamSet whole;
  MEMTRAIN_RETURN_IF_ERROR(model::Model::create(m, whole).status());
  MEMTRAIN_RETURN_IF_ERROR(whole.allocate());
  MEMTRAIN_RETURN_IF_ERROR(model::merge_adapters(tuned, whole));
  std::vector<NamedTensor> params;
  for (const auto& p : whole.all()) params.push_back({p->name, p->value});
  return write_hf_model(out_dir, m, params, base.dtypes, dtype, max_shard_bytes);
}

}  // namespace memtrain::trainer
