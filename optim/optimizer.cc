#include "optim/optimizer.h"

#include "absl/strings/str_cat.h"
#include "optim/adafactor.h"
#include "optim/adamw.h"
#include "optim/adamw8bit.h"
#include "optim/apollo.h"
#include "optim/coap.h"
#include "optim/galore.h"
#include "optim/projection.h"
#include "optim/smmf.h"
#include "optim/zo_sgd.h"

namespace memtrain::optim {

std::vector<OptimTarget> whole_targets(model::ParamSet& params) {
  std::vector<OptimTarget> targets;
  for (const auto& p : params.all()) targets.push_back({p.get(), p->value.f32(), p->grad.f32(), p->value.numel()});
  return targets;
}

bool decays(const model::Param& p, const OptimConfig& cfg) {
  switch (p.kind) {
    case model::ParamKind::kWeight: return true;
    case model::ParamKind::kEmbedding: return cfg.decay_embeddings;
    case model::ParamKind::kNorm:
    case model::ParamKind::kBias: return cfg.decay_norms_and_biases;
  }
  return true;
}

bool works_on_whole_matrices(const std::string& name) {
  return name == "adafactor" || name == "apollo" || name == "apollo_mini" || name == "galore_adamw" || name == "smmf" ||
         name == "coap_adamw";
}

bool needs_whole_tensor(const model::Param& p, const OptimConfig& cfg) {
  // Vectors too: Adafactor clips each tensor's update by its RMS, SMMF factors every tensor.
  if (cfg.name == "adafactor" || cfg.name == "smmf") return true;
  if (!works_on_whole_matrices(cfg.name)) return false;
  return projects_matrix(p);
}

int64_t optimizer_state_bytes(const OptimTarget& t, const OptimConfig& cfg) {
  if (cfg.name == "adamw8bit") return AdamW8bit::state_bytes(t);
  if (cfg.name == "adafactor") return Adafactor::state_bytes(t, cfg);
  if (cfg.name == "apollo" || cfg.name == "apollo_mini") return Apollo::state_bytes(t, cfg, cfg.name == "apollo_mini");
  if (cfg.name == "galore_adamw") return GaLore::state_bytes(t, cfg);
  if (cfg.name == "smmf") return Smmf::state_bytes(t);
  if (cfg.name == "zo_sgd") return 0;
  if (cfg.name == "coap_adamw") return Coap::state_bytes(t, cfg);
  return 8 * t.n;  // AdamW: m and v in fp32
}

std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p, const OptimConfig& cfg) {
  if (cfg.name == "adafactor") return Adafactor::checkpoint_layout(p, cfg);
  if (cfg.name == "apollo" || cfg.name == "apollo_mini")
    return Apollo::checkpoint_layout(p, cfg, cfg.name == "apollo_mini");
  if (cfg.name == "galore_adamw") return GaLore::checkpoint_layout(p, cfg);
  if (cfg.name == "adamw8bit") return AdamW8bit::checkpoint_layout(p);
  if (cfg.name == "smmf") return Smmf::checkpoint_layout(p);
  if (cfg.name == "zo_sgd") return {};
  if (cfg.name == "coap_adamw") return Coap::checkpoint_layout(p, cfg);
  return {{"m", p.shape}, {"v", p.shape}};  // AdamW
}

absl::StatusOr<std::unique_ptr<Optimizer>> create_optimizer(std::vector<OptimTarget> targets, const OptimConfig& cfg,
                                                            uint64_t seed) {
  if (cfg.name == "adamw") {
    MEMTRAIN_ASSIGN_OR_RETURN(AdamW opt, AdamW::create(std::move(targets), cfg));
    return std::unique_ptr<Optimizer>(std::make_unique<AdamW>(std::move(opt)));
  }
  if (cfg.name == "adamw8bit") return AdamW8bit::create(std::move(targets), cfg);
  if (cfg.name == "adafactor") return Adafactor::create(std::move(targets), cfg);
  if (cfg.name == "apollo" || cfg.name == "apollo_mini")
    return Apollo::create(std::move(targets), cfg, cfg.name == "apollo_mini", seed);
  if (cfg.name == "galore_adamw") return GaLore::create(std::move(targets), cfg);
  if (cfg.name == "smmf") return Smmf::create(std::move(targets), cfg);
  if (cfg.name == "coap_adamw") return Coap::create(std::move(targets), cfg);
  if (cfg.name == "zo_sgd") {  // every target whole on this rank: it perturbs what it updates
    std::vector<OptimTarget> perturbed = targets;
    return std::unique_ptr<Optimizer>(ZoSgd::create(std::move(targets), std::move(perturbed), cfg, seed));
  }
  return config_error("optim.name", absl::StrCat("no optimizer '", cfg.name, "'"));
}

}  // namespace memtrain::optim
