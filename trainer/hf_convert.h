// memtrain convert: Hugging Face model directories (GPT-2 and LLaMA: config.json + safetensors, one file or
// sharded with an index) to memtrain checkpoints and back. Names and layouts are already Hugging Face's
// (model/params.h), so converting maps the config, checks the tensor set and changes only the element type:
// weights are fp32 in a checkpoint, and the export writes each tensor in the type it was imported with (recorded
// in the manifest) unless told otherwise, so a round trip is bit for bit.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/safetensors.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "model/model_config.h"

namespace memtrain::trainer {

// config.json -> [model]; errors name the key ("config.json: hidden_act: ..."). Unsupported features (rope
// scaling, biased LLaMA projections, other activations) are errors, not silently different models.
absl::StatusOr<model::ModelConfig> model_config_from_hf(const std::string& config_json);
// With model.from_hf set: its config.json into the other [model] keys (errors name model.from_hf). Else nothing.
absl::Status read_hf_model_config(model::ModelConfig& m);
// [model] -> config.json, as transformers writes it; `dtype` names torch_dtype. GPT-2 without biases has no
// Hugging Face form (an error).
absl::StatusOr<std::string> hf_config_from_model(const model::ModelConfig& m, DType dtype);

// A Hugging Face model directory's parameters as fp32 tensors with memtrain's (= Hugging Face's) names, checked
// to be exactly the parameters of the model its config.json describes: every missing, unexpected or misshapen
// tensor is listed in the error. Buffers and a tied head's copy are skipped (and counted).
struct HfModel {
  model::ModelConfig model;
  std::map<std::string, Tensor> params;       // fp32
  std::map<std::string, std::string> dtypes;  // each parameter's type in the files
  int64_t skipped = 0;
};
absl::StatusOr<HfModel> read_hf_model(const std::string& hf_dir, MemCategory category);

struct ConvertSummary {
  std::string written;  // the checkpoint file or the directory
  model::ModelConfig model;
  int64_t tensors = 0;
  int64_t skipped = 0;  // buffers and tied copies the Hugging Face files carry besides the parameters
};

// Reads the model directory, checks that its tensors are exactly the model's (listing every missing, unexpected
// or misshapen one) and writes a weights-only checkpoint into out_dir/checkpoints (a run with output.dir = out_dir
// and train.resume = "auto" starts from it).
absl::StatusOr<ConvertSummary> import_hf(const std::string& hf_dir, const std::string& out_dir);

// A whole model's fp32 parameters (in the model's order) as a Hugging Face directory: each tensor as `dtype`, or
// else as `dtypes` names it (its imported type), or f32; config.json's torch_dtype is the type of most elements.
absl::StatusOr<ConvertSummary> write_hf_model(const std::string& out_dir, const model::ModelConfig& m,
                                              const std::vector<checkpoint::NamedTensor>& params,
                                              const std::map<std::string, std::string>& dtypes,
                                              std::optional<DType> dtype, int64_t max_shard_bytes);

// `checkpoint`: a file, a checkpoints directory or an output.dir (its latest). dtype: the element type of every
// tensor; nullopt: each tensor's imported type, f32 for weights memtrain trained from scratch.
absl::StatusOr<ConvertSummary> export_hf(const std::string& checkpoint, const std::string& out_dir,
                                         std::optional<DType> dtype, int64_t max_shard_bytes);

}  // namespace memtrain::trainer
