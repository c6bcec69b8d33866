// LoRA adapters in PEFT's layout, which Hugging Face's peft loads with PeftModel.from_pretrained: a directory
// with adapter_config.json (peft_type LORA, r, lora_alpha, target_modules, fan_in_fan_out for GPT-2's Conv1D,
// base_model_name_or_path) and adapter_model.safetensors, whose tensors are named
// base_model.model.<module>.lora_A.weight (r, in) and ...lora_B.weight (out, r). Also the merged model: the
// base with every adapter's (alpha / r) B A added, as a plain Hugging Face model directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/safetensors.h"
#include "model/lora_spec.h"
#include "model/model_config.h"
#include "model/params.h"
#include "trainer/hf_convert.h"

namespace memtrain::trainer {

inline constexpr char kPeftPrefix[] = "base_model.model.";

// `tuned`: a whole (no tensor parallelism) fine-tuned model's parameters (adapters; LoRA-FA's A is in its frozen
// set). base_model names the base for adapter_config.json (model.from_hf, may be empty). Files are written
// atomically, the config last.
absl::Status write_peft_adapter(const std::string& dir, const model::ParamSet& tuned, const model::ModelConfig& m);

struct PeftAdapter {
  model::LoraSpec spec;     // r, alpha, target_modules
  std::string base_model;   // base_model_name_or_path
  std::vector<checkpoint::NamedTensor> tensors;  // memtrain names (the PEFT prefix removed), fp32
};
// Errors name the file and the key; only LoRA adapters without biases, DoRA or rsLoRA are accepted.
absl::StatusOr<PeftAdapter> read_peft_adapter(const std::string& dir);

// The adapter's tensors into `tuned`'s adapters (trainable, or LoRA-FA's frozen A; whole, no tensor
// parallelism): each must be there with its shape, and nothing else (errors name `dir` and the tensor).
absl::Status copy_adapter_tensors(const PeftAdapter& adapter, const std::string& dir, model::ParamSet& tuned);

// The merged model of adapter_dir over base_dir (empty: the adapter's base_model_name_or_path) into out_dir as
// a Hugging Face model directory (dtype: each tensor's; nullopt: the base's types). Every adapter tensor must
// belong to a projection of the base (errors name it). nf4_base: every projection of the base goes through NF4
// first, as a QLoRA run held it, so the merged model is the one that run trained.
absl::StatusOr<ConvertSummary> merge_peft_adapter(const std::string& adapter_dir, std::string base_dir,
                                                  const std::string& out_dir, std::optional<DType> dtype,
                                                  int64_t max_shard_bytes, bool nf4_base = false);

}  // namespace memtrain::trainer
