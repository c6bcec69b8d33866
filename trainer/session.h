// What every subcommand sets up from a config: the process-wide pool and budget, the model with its parameters,
// and the token data (prepared from text on the first use).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "data/token_shard.h"
#include "model/model.h"
#include "trainer/config.h"
#include "trainer/hf_convert.h"

namespace memtrain::trainer {

// Kernel threads (train.threads; 0 = the cores divided among the `local_ranks` processes of this node) and
// memory.budget.
void apply_runtime(const Config& cfg, int local_ranks = 1);

struct ModelBundle {
  // memory.activations' swap tiers (null when unused); declared first, so the models go before them.
  std::unique_ptr<SwapTier> host_swap, ssd_swap;
  model::ParamSet params;  // what trains; with [lora] the adapters, the base in params.frozen_set()
  std::unique_ptr<model::Model> model;  // the whole model, or this pp rank's first pipeline stage
  std::vector<std::unique_ptr<model::Model>> later_chunks;  // an interleaved pipeline's further stages on this rank
  std::vector<model::Model*> chunks() const;  // model, then later_chunks
};
// model.from_hf's parameters (fp32, whole, category workspace), or nullopt without it.
absl::StatusOr<std::optional<HfModel>> read_starting_weights(const Config& cfg);
// p's whole starting value (p.shape, fp32, workspace): `hf`'s tensor (read_starting_weights), or without it the
// train.seed initialisation.
absl::StatusOr<Tensor> starting_whole_value(const Config& cfg, const std::optional<HfModel>& hf,
                                            const model::Param& p);

// Builds the model (this tp rank's part, running this cp rank's chunks of the sequences; with pp > 1 the pipeline
// stages pp rank `pp_rank` holds), allocates its parameters and initialises them from train.seed, or
// model.from_hf's weights. With allocate = false the parameters are only registered (a data-parallel engine
// allocates and initialises them). A LoRA fine-tune's frozen base is loaded either way (QLoRA: quantized).
absl::StatusOr<std::unique_ptr<ModelBundle>> build_model(const Config& cfg, bool allocate = true,
                                                         const model::TensorParallel& tp = {},
                                                         const model::ContextParallel& cp = {}, int pp_rank = 0,
                                                         int pp = 1);

// output.dir/model.safetensors, with Hugging Face tensor names.
std::string weights_path(const Config& cfg);
// output.dir/adapter: a LoRA run's adapter in PEFT's layout (trainer/peft_adapter.h).
std::string adapter_path(const Config& cfg);
absl::Status save_weights(const ModelBundle& bundle, const std::string& path);
// A fine-tune's model (whole: no tensor or pipeline parallelism) with every adapter merged into its base, saved as
// save_weights saves a plain model.
absl::Status save_merged_weights(const ModelBundle& tuned, const std::string& path);
// Every parameter must be present with its shape (extra tensors are an error too); errors name the file.
absl::Status load_weights(ModelBundle& bundle, const std::string& path);

struct TokenData {
  data::TokenShard train, val;
};
// data.dataset's shards, or data.text tokenized into output.dir/data (prepared there first unless `prepare` is
// false: the other ranks of a run open what rank 0 prepared). Checks the shards fit model.vocab_size.
absl::StatusOr<TokenData> open_token_data(const Config& cfg, bool prepare = true);

}  // namespace memtrain::trainer
