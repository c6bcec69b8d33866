#include "trainer/session.h"

#include "trainer/pipeline.h"

#include <sys/statvfs.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "checkpoint/safetensors.h"
#include "core/thread_pool.h"
#include "data/prepare.h"
#include "model/lora.h"
#include "offload/host_swap.h"
#include "offload/ssd_swap.h"
#include "parallel/world.h"

namespace memtrain::trainer {

void apply_runtime(const Config& cfg, int local_ranks) {
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  ThreadPool::set_global_threads(cfg.train.threads > 0 ? static_cast<int>(cfg.train.threads)
                                                       : std::max(1, hw / std::max(1, local_ranks)));
  MemoryTracker::host().set_budget(cfg.memory.budget_bytes());
}

absl::StatusOr<std::optional<HfModel>> read_starting_weights(const Config& cfg) {
  if (cfg.model.from_hf.empty()) return std::optional<HfModel>();
  MEMTRAIN_ASSIGN_OR_RETURN(HfModel hf, read_hf_model(cfg.model.from_hf, MemCategory::kWorkspace));
  return std::optional<HfModel>(std::move(hf));
}

absl::StatusOr<Tensor> starting_whole_value(const Config& cfg, const std::optional<HfModel>& hf,
                                            const model::Param& p) {
  if (hf) return hf->params.at(p.name);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor t, Tensor::empty(p.shape, DType::kF32, MemCategory::kWorkspace));
  model::ParamSet::initialize_slice(p, static_cast<uint64_t>(cfg.train.seed), 0, t.numel(), t.f32());
  return t;
}

namespace {

// The frozen base of a fine-tune: model.from_hf's weights (this rank's parts) or the seed's, LoRA-FA's frozen A
// from the seed; with QLoRA the projections quantized.
absl::Status load_frozen(const Config& cfg, model::ParamSet& frozen) {
  MEMTRAIN_RETURN_IF_ERROR(frozen.allocate());
  frozen.initialize(static_cast<uint64_t>(cfg.train.seed));
  MEMTRAIN_ASSIGN_OR_RETURN(std::optional<HfModel> hf, read_starting_weights(cfg));
  if (hf) {
    for (const auto& p : frozen.all()) {
      if (p->adapter) continue;
      model::ParamSet::copy_local(*p, hf->params.at(p->name).f32(), 0, p->value.numel(), p->value.f32());
    }
  }
  if (!cfg.lora.nf4()) return absl::OkStatus();
  // A tensor-parallel part is cut from the whole weight quantized, which comes from the file or the seed again.
  return frozen.quantize_frozen_projections([&](const model::Param& p) { return starting_whole_value(cfg, hf, p); });
}

}  // namespace

namespace {

// The tiers memory.activations and offload.optimizer/parameters name (one SSD tier serves all), pointed to by every
// chunk.
// The SSD tier's directory must have room for what one micro-batch swaps.
absl::Status attach_swap_tiers(const Config& cfg, ModelBundle& bundle) {
  const model::Model& m = *bundle.model;
  if (m.activation_policy().uses_host_tier() || cfg.offload.parameters == "host")
    bundle.host_swap = offload::HostSwap::create();
  if (m.activation_policy().uses_ssd_tier() || cfg.offload.uses_ssd()) {
    const std::string& dir = cfg.offload.ssd_path;
    absl::StatusOr<parallel::LaunchInfo> launch = parallel::detect_launch(std::getenv);
    auto tier = offload::SsdSwap::create(dir, absl::StrCat("rank", launch.ok() ? launch->rank : 0));
    if (!tier.ok()) return absl::Status(tier.status().code(), absl::StrCat("offload.ssd_path: ", tier.status().message()));
    if (!(*tier)->direct()) {
      std::fprintf(stderr, "warning: offload.ssd_path: %s does not take O_DIRECT; swapping goes through the page "
                           "cache\n", dir.c_str());
    }
    int64_t needed = 0;
    for (const model::Model* c : bundle.chunks()) {
      needed += c->predicted_swapped_bytes(cfg.train.batch_size, cfg.train.resolved_seq_len(cfg.model.block_size),
                                           model::LayerPolicy::kSwapSsd);
    }
    struct statvfs fs;
    const int64_t free = ::statvfs(dir.c_str(), &fs) == 0 ? static_cast<int64_t>(fs.f_bavail * fs.f_frsize) : -1;
    if (free >= 0 && free < needed) {
      return absl::ResourceExhaustedError(absl::StrCat("offload.ssd_path: ", dir, " has ", format_bytes(free),
                                                       " free; one micro-batch swaps ", format_bytes(needed), " there"));
    }
    bundle.ssd_swap = std::move(*tier);
  }
  for (model::Model* c : bundle.chunks()) c->set_swap_tiers(bundle.host_swap.get(), bundle.ssd_swap.get());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBundle>> build_model(const Config& cfg, bool allocate,
                                                         const model::TensorParallel& tp,
                                                         const model::ContextParallel& cp, int pp_rank, int pp) {
  auto bundle = std::make_unique<ModelBundle>();
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<model::Model>> models,
                            create_rank_models(cfg, bundle->params, tp, cp, pp_rank, pp));
  bundle->model = std::move(models[0]);
  for (size_t c = 1; c < models.size(); ++c) bundle->later_chunks.push_back(std::move(models[c]));
  MEMTRAIN_RETURN_IF_ERROR(attach_swap_tiers(cfg, *bundle));
  if (model::ParamSet* frozen = bundle->params.frozen_set()) MEMTRAIN_RETURN_IF_ERROR(load_frozen(cfg, *frozen));
  if (!allocate) return bundle;
  MEMTRAIN_RETURN_IF_ERROR(bundle->params.allocate());
  bundle->params.initialize(static_cast<uint64_t>(cfg.train.seed));
  if (cfg.lora.enabled()) return bundle;  // the adapters start from their initialisation
  MEMTRAIN_ASSIGN_OR_RETURN(std::optional<HfModel> hf, read_starting_weights(cfg));
  if (hf) {
    for (const auto& p : bundle->params.all())
      model::ParamSet::copy_local(*p, hf->params.at(p->name).f32(), 0, p->value.numel(), p->value.f32());
  }
  return bundle;
}

std::vector<model::Model*> ModelBundle::chunks() const {
  std::vector<model::Model*> out{model.get()};
  for (const auto& m : later_chunks) out.push_back(m.get());
  return out;
}

std::string adapter_path(const Config& cfg) { return (std::filesystem::path(cfg.output.dir) / "adapter").string(); }

std::string weights_path(const Config& cfg) { return (std::filesystem::path(cfg.output.dir) / "model.safetensors").string(); }

absl::Status save_weights(const ModelBundle& bundle, const std::string& path) {
  std::vector<checkpoint::NamedTensor> tensors;
  for (const auto& p : bundle.params.all()) tensors.push_back({p->name, p->value});
  return checkpoint::write_safetensors(path, tensors, {{"format", "pt"}, {"arch", bundle.model->config().arch}});
}

absl::Status save_merged_weights(const ModelBundle& tuned, const std::string& path) {
  ModelBundle plain;
  MEMTRAIN_ASSIGN_OR_RETURN(plain.model, model::Model::create(tuned.model->config(), plain.params));
  MEMTRAIN_RETURN_IF_ERROR(plain.params.allocate());
  MEMTRAIN_RETURN_IF_ERROR(model::merge_adapters(tuned.params, plain.params));
  return save_weights(plain, path);
}

absl::Status load_weights(ModelBundle& bundle, const std::string& path) {
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoint::SafetensorsFile file, checkpoint::read_safetensors(path, MemCategory::kWorkspace));
  std::set<std::string> seen;
  for (const checkpoint::NamedTensor& t : file.tensors) {
    model::Param* p = bundle.params.find(t.name);
    if (p == nullptr) return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' is not in this model"));
    if (t.tensor.shape() != p->shape || t.tensor.dtype() != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "' is ", dtype_name(t.tensor.dtype()),
                                                     shape_string(t.tensor.shape()), ", the model needs f32",
                                                     shape_string(p->shape)));
    }
    std::copy_n(t.tensor.f32(), t.tensor.numel(), p->value.f32());
    seen.insert(t.name);
  }
  for (const auto& p : bundle.params.all()) {
    if (!seen.count(p->name)) return absl::InvalidArgumentError(absl::StrCat(path, ": missing tensor '", p->name, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenData> open_token_data(const Config& cfg, bool prepare) {
  std::string dir = cfg.data.dataset;
  if (dir.empty()) {
    dir = (std::filesystem::path(cfg.output.dir) / "data").string();
    if (prepare) {
      MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<data::Tokenizer> tok, data::load_tokenizer(cfg.data.tokenizer));
      MEMTRAIN_RETURN_IF_ERROR(data::prepare_text_dataset(cfg.data.text, cfg.data.val_fraction, dir, tok.get()).status());
    }
  }
  MEMTRAIN_ASSIGN_OR_RETURN(data::TokenShard train, data::TokenShard::open((std::filesystem::path(dir) / "train.bin").string()));
  MEMTRAIN_ASSIGN_OR_RETURN(data::TokenShard val, data::TokenShard::open((std::filesystem::path(dir) / "val.bin").string()));
  for (const data::TokenShard* s : {&train, &val}) {
    if (s->vocab_size() > cfg.model.vocab_size) {
      return config_error("model.vocab_size", absl::StrCat(cfg.model.vocab_size, " is smaller than the dataset's vocabulary (",
                                                           s->vocab_size(), ") in ", dir));
    }
  }
  return TokenData{std::move(train), std::move(val)};
}

}  // namespace memtrain::trainer
