// The [lora] section: what a LoRA fine-tune attaches and how, as PEFT's LoraConfig names it. Adapters of rank r on
// the projections named in target_modules (the last component of a Hugging Face name: "q_proj", "c_attn", ...),
// scaled by alpha / r; LoRA-FA freezes A after its initialisation; QLoRA stores the frozen projection weights in
// NF4; LoRA-GA initialises the adapters from the gradient's singular vectors, QuAILoRA from the NF4 base's
// quantization error as calibration inputs weight it; PeriodicLoRA merges the adapters into the base and restarts
// them every periodic_interval steps. It knows nothing of TOML; trainer/config walks `visit`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace memtrain::model {

struct LoraSpec {
  int64_t r = 0;  // 0: no adapters, every parameter trains
  double alpha = 16;
  std::vector<std::string> target_modules;  // empty: PEFT's default for the architecture
  double dropout = 0.0;                     // PEFT's lora_dropout
  bool fa = false;                          // LoRA-FA
  std::string quantize_base = "none";       // or "nf4" (QLoRA)
  int64_t periodic_interval = 0;            // PeriodicLoRA's stage length in optimizer steps; 0: plain LoRA
  std::string init = "default";             // or "lora_ga", "quailora"
  int64_t ga_batches = 2;                   // LoRA-GA: global batches its gradient estimate averages
  double ga_gamma = 16;                     // LoRA-GA's stable_gamma
  int64_t calib_batches = 4;                // QuAILoRA: global batches whose projection inputs weight the error
  int64_t als_iters = 20;                   // QuAILoRA: alternating least-squares iterations

  template <class V> void visit(V& v) {
    v("r", r, "adapter rank, >= 0; 0 = no adapters (every parameter trains)");
    v("alpha", alpha, "the update is (alpha / r) B A, > 0");
    v("target_modules", target_modules,
      "projections that get adapters, by the last part of their Hugging Face name (gpt2: c_attn, c_proj, c_fc; "
      "llama: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj); [] = PEFT's default (gpt2 c_attn, "
      "llama q_proj and v_proj)");
    v("dropout", dropout,
      "probability of zeroing each input element of the adapters in training (PEFT's lora_dropout), in [0, 1)");
    v("fa", fa, "LoRA-FA: A stays as initialised, only B trains");
    v("quantize_base", quantize_base, "none | nf4: the frozen projection weights in 4-bit NormalFloat (QLoRA)");
    v("periodic_interval", periodic_interval,
      "PeriodicLoRA: every this many optimizer steps the adapters are merged into the base weights and start "
      "again (A drawn afresh, B zero, their optimizer state new), so the total update can exceed rank r; 0 = off");
    v("init", init,
      "default | lora_ga | quailora: PEFT's initialisation (B = 0); LoRA-GA's: A and B from the singular vectors "
      "of the weight gradient estimated over lora.ga_batches batches, the base offset so the model starts unchanged; "
      "QuAILoRA's (needs quantize_base = \"nf4\"): B A cancels as much of the quantization error W - Q as a rank-r "
      "product can on the projection inputs of lora.calib_batches batches");
    v("ga_batches", ga_batches, "LoRA-GA: the first global batches of the run its gradient estimate averages, >= 1");
    v("ga_gamma", ga_gamma, "LoRA-GA's stable scale: A and B times out^(1/4) / sqrt(ga_gamma), > 0");
    v("calib_batches", calib_batches,
      "QuAILoRA: the first global batches of the run whose projection inputs weight the quantization error, >= 1");
    v("als_iters", als_iters, "QuAILoRA: alternating least-squares iterations after the SVD start, >= 0");
  }
  absl::Status validate() const;
  // The rules that need the architecture: every target is one of its projections.
  absl::Status validate_for(const std::string& arch) const;

  bool enabled() const { return r > 0; }
  bool nf4() const { return quantize_base == "nf4"; }
  bool periodic() const { return enabled() && periodic_interval > 0; }
  bool lora_ga() const { return enabled() && init == "lora_ga"; }
  bool quailora() const { return enabled() && init == "quailora"; }
  // Whether training changes the frozen base (PeriodicLoRA's merges, LoRA-GA's offset): checkpoints then hold it,
  // and the run saves the merged model instead of an adapter.
  bool changes_base() const { return periodic() || lora_ga(); }
  float scale() const { return static_cast<float>(alpha / static_cast<double>(r)); }
  std::vector<std::string> targets(const std::string& arch) const;
  bool targets_module(const std::string& module) const;  // after resolve()
  // target_modules with the default filled in for `arch`.
  void resolve(const std::string& arch) { target_modules = targets(arch); }
};

}  // namespace memtrain::model
