#include "model/lora_spec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"

namespace memtrain::model {
namespace {

std::vector<std::string> projections(const std::string& arch) {
  if (arch == "gpt2") return {"c_attn", "c_proj", "c_fc"};
  return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
}

}  // namespace

absl::Status LoraSpec::validate() const {
  if (r < 0) return config_error("lora.r", absl::StrCat("must be >= 0, got ", r));
  if (!(alpha > 0)) return config_error("lora.alpha", absl::StrCat("must be > 0, got ", alpha));
  if (!(dropout >= 0 && dropout < 1))
    return config_error("lora.dropout", absl::StrCat("must be in [0, 1), got ", dropout));
  if (quantize_base != "none" && quantize_base != "nf4")
    return config_error("lora.quantize_base", absl::StrCat("must be none or nf4, got '", quantize_base, "'"));
  if (nf4() && r == 0)
    return config_error("lora.quantize_base", "nf4 needs lora.r > 0 (QLoRA trains adapters over the 4-bit base)");
  if (periodic_interval < 0)
    return config_error("lora.periodic_interval", absl::StrCat("must be >= 0, got ", periodic_interval));
  if (periodic_interval > 0 && r == 0)
    return config_error("lora.periodic_interval", "restarts adapters; set lora.r > 0");
  if (init != "default" && init != "lora_ga" && init != "quailora")
    return config_error("lora.init", absl::StrCat("must be default, lora_ga or quailora, got '", init, "'"));
  if (ga_batches < 1) return config_error("lora.ga_batches", absl::StrCat("must be >= 1, got ", ga_batches));
  if (!(ga_gamma > 0)) return config_error("lora.ga_gamma", absl::StrCat("must be > 0, got ", ga_gamma));
  if (init == "lora_ga" && nf4())
    return config_error("lora.init", "lora_ga offsets the base weights, which an NF4 base (lora.quantize_base = "
                                     "\"nf4\") would have to be quantized again for");
  if (calib_batches < 1)
    return config_error("lora.calib_batches", absl::StrCat("must be >= 1, got ", calib_batches));
  if (als_iters < 0) return config_error("lora.als_iters", absl::StrCat("must be >= 0, got ", als_iters));
  if (init == "quailora" && !nf4())
    return config_error("lora.init", "quailora starts the adapters from an NF4 base's quantization error: set "
                                     "lora.quantize_base = \"nf4\"");
  if (periodic_interval > 0 && nf4())
    return config_error("lora.periodic_interval", "merges the adapters into the base weights, which an NF4 base "
                                                  "(lora.quantize_base = \"nf4\") cannot absorb");
  return absl::OkStatus();
}

absl::Status LoraSpec::validate_for(const std::string& arch) const {
  const std::vector<std::string> known = projections(arch);
  for (const std::string& t : target_modules) {
    if (std::find(known.begin(), known.end(), t) == known.end())
      return config_error("lora.target_modules", absl::StrCat("'", t, "' is not a projection of ", arch, " (",
                                                              absl::StrJoin(known, ", "), ")"));
  }
  return absl::OkStatus();
}

std::vector<std::string> LoraSpec::targets(const std::string& arch) const {
  if (!target_modules.empty()) return target_modules;
  if (arch == "gpt2") return {"c_attn"};
  return {"q_proj", "v_proj"};
}

bool LoraSpec::targets_module(const std::string& module) const {
  return std::find(target_modules.begin(), target_modules.end(), module) != target_modules.end();
}

}  // namespace memtrain::model
