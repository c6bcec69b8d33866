// What a LoRA fine-tune attaches and how (the [lora] config section, as PEFT's LoraConfig names it): adapters of
// rank r on the projections named in `targets` (the last component of a Hugging Face name: "q_proj", "c_attn",
// ...), scaled by alpha / r; LoRA-FA freezes A after its initialisation; QLoRA stores the frozen projection
// weights in NF4.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace memtrain::model {

struct LoraSpec {
  int64_t r = 8;
  double alpha = 16;
  std::vector<std::string> targets;
  bool freeze_a = false;  // LoRA-FA
  bool nf4 = false;       // QLoRA: frozen projection weights 4-bit

  float scale() const { return static_cast<float>(alpha / static_cast<double>(r)); }
  bool targets_module(const std::string& module) const {
    for (const std::string& t : targets)
      if (t == module) return true;
    return false;
  }
};

}  // namespace memtrain::model
