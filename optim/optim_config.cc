// Range checks of the [optim] section; cross-section rules live in trainer/config.cc.
#include "optim/optim_config.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::optim {

absl::Status OptimConfig::validate() const {
  if (name != "adamw" && name != "adamw8bit" && name != "adafactor" && name != "apollo" && name != "apollo_mini" &&
      name != "galore_adamw" && name != "smmf" && name != "zo_sgd" && name != "coap_adamw") {
    return config_error("optim.name", absl::StrCat("must be adamw, adamw8bit, adafactor, apollo, apollo_mini, "
                                                   "galore_adamw, smmf, coap_adamw or zo_sgd, got '", name, "'"));
  }
  // Written as !(x > 0) so that NaN fails too.
  if (!(lr > 0)) return config_error("optim.lr", absl::StrCat("must be > 0, got ", lr));
  if (!(min_lr >= 0)) return config_error("optim.min_lr", absl::StrCat("must be >= 0, got ", min_lr));
  if (min_lr > lr) return config_error("optim.min_lr", absl::StrCat(min_lr, " exceeds optim.lr (", lr, ")"));
  if (!(beta1 >= 0 && beta1 < 1)) return config_error("optim.beta1", absl::StrCat("must be in [0, 1), got ", beta1));
  if (!(beta2 >= 0 && beta2 < 1)) return config_error("optim.beta2", absl::StrCat("must be in [0, 1), got ", beta2));
  if (!(eps > 0)) return config_error("optim.eps", absl::StrCat("must be > 0, got ", eps));
  if (!(weight_decay >= 0))
    return config_error("optim.weight_decay", absl::StrCat("must be >= 0, got ", weight_decay));
  if (!(grad_clip >= 0))
    return config_error("optim.grad_clip", absl::StrCat("must be >= 0 (0 = off), got ", grad_clip));
  if (schedule != "constant" && schedule != "cosine" && schedule != "linear")
    return config_error("optim.schedule", absl::StrCat("must be constant, cosine or linear, got '", schedule, "'"));
  if (warmup_steps < 0) return config_error("optim.warmup_steps", absl::StrCat("must be >= 0, got ", warmup_steps));
  if (decay_steps < 0)
    return config_error("optim.decay_steps", absl::StrCat("must be >= 0 (0 = train.max_steps), got ", decay_steps));
  if (!(adafactor_decay_rate < 0))
    return config_error("optim.adafactor_decay_rate", absl::StrCat("must be < 0, got ", adafactor_decay_rate));
  if (rank < 1) return config_error("optim.rank", absl::StrCat("must be >= 1, got ", rank));
  if (update_proj_gap < 1)
    return config_error("optim.update_proj_gap", absl::StrCat("must be >= 1, got ", update_proj_gap));
  if (!(apollo_scale >= 0)) return config_error("optim.apollo_scale", absl::StrCat("must be >= 0, got ", apollo_scale));
  if (!(apollo_norm_growth >= 1))
    return config_error("optim.apollo_norm_growth", absl::StrCat("must be >= 1, got ", apollo_norm_growth));
  if (!(galore_scale > 0)) return config_error("optim.galore_scale", absl::StrCat("must be > 0, got ", galore_scale));
  if (!(adafactor_clip > 0))
    return config_error("optim.adafactor_clip", absl::StrCat("must be > 0, got ", adafactor_clip));
  if (!(smmf_decay_rate >= -1 && smmf_decay_rate < 0))
    return config_error("optim.smmf_decay_rate", absl::StrCat("must be in [-1, 0), got ", smmf_decay_rate));
  if (!(smmf_growth_rate > 0 && smmf_growth_rate <= 1))
    return config_error("optim.smmf_growth_rate", absl::StrCat("must be in (0, 1], got ", smmf_growth_rate));
  if (coap_update_interval < 1)
    return config_error("optim.coap_update_interval", absl::StrCat("must be >= 1, got ", coap_update_interval));
  if (coap_reproject_factor < 1)
    return config_error("optim.coap_reproject_factor", absl::StrCat("must be >= 1, got ", coap_reproject_factor));
  if (!(coap_scale > 0)) return config_error("optim.coap_scale", absl::StrCat("must be > 0, got ", coap_scale));
  if (lisa_layers < 0) return config_error("optim.lisa_layers", absl::StrCat("must be >= 0, got ", lisa_layers));
  if (lisa_interval < 1)
    return config_error("optim.lisa_interval", absl::StrCat("must be >= 1, got ", lisa_interval));
  if (lisa_layers > 0 && name != "adamw" && name != "adamw8bit")
    return config_error("optim.lisa_layers", absl::StrCat("trains with adamw or adamw8bit; optim.name is '", name,
                                                          "'"));
  if (!(zo_eps > 0)) return config_error("optim.zo_eps", absl::StrCat("must be > 0, got ", zo_eps));
  return absl::OkStatus();
}

}  // namespace memtrain::optim
