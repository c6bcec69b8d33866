// The [optim] section: optimizer, learning-rate schedule and clipping. It knows nothing of TOML;
// trainer/config walks `visit` to parse, override, dump and document it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace memtrain::optim {

struct OptimConfig {
  std::string name = "adamw";
  double lr = 1e-3;
  double min_lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_embeddings = false;
  bool decay_norms_and_biases = false;
  double grad_clip = 1.0;
  std::string schedule = "cosine";
  int64_t warmup_steps = 100;
  int64_t decay_steps = 0;  // 0: train.max_steps
  double adafactor_decay_rate = -0.8;
  double adafactor_clip = 1.0;
  bool adafactor_momentum = false;
  bool adafactor_scale_parameter = false;
  bool adafactor_relative_step = false;
  int64_t rank = 256;
  int64_t update_proj_gap = 200;
  double apollo_scale = 0;  // 0: 1 for apollo, 128 for apollo_mini
  double apollo_norm_growth = 1.01;
  double galore_scale = 0.25;
  bool galore_int8_projection = false;
  double smmf_decay_rate = -0.5;
  double smmf_growth_rate = 0.999;
  double zo_eps = 1e-3;
  int64_t lisa_layers = 0;
  int64_t lisa_interval = 20;
  int64_t coap_update_interval = 32;
  int64_t coap_reproject_factor = 5;
  double coap_scale = 1.0;

  template <class V> void visit(V& v) {
    v("name", name,
      "optimizer: adamw, or adamw8bit (both moments as 8-bit codes with an fp32 absmax per block of 256: about 2 "
      "bytes of state per parameter instead of 8; tensors under 4096 elements keep fp32 moments), or adafactor "
      "(a matrix's second moment as row and column means: rows + cols floats), or apollo / apollo_mini (AdamW "
      "moments of a random rank-optim.rank (mini: 1) projection of each weight matrix's gradient, which scale the "
      "full gradient per channel or per tensor), or galore_adamw (AdamW moments of each weight matrix's gradient "
      "projected on its top-optim.rank singular vectors, refreshed every optim.update_proj_gap steps), or smmf (both "
      "moments of each tensor, viewed as its most nearly square matrix, as rank-1 factors, the first moment's signs "
      "as bits: about 1/8 byte per parameter), or coap_adamw (AdamW moments of each weight matrix's gradient projected "
      "on rank optim.rank, the projection moved by one correlation-aware gradient step every "
      "optim.coap_update_interval steps and recomputed by a randomized SVD every optim.coap_reproject_factor of those), or zo_sgd (zeroth-order SGD, MeZO: two forwards per step along a "
      "random direction regenerated from the seed, no backward, no gradients and no state; no pipeline or context "
      "parallelism, hpZ, qwZ or offload); adafactor, apollo, galore_adamw, smmf and coap_adamw update each "
      "(global) matrix whole on one rank: zero.stage <= 2");
    v("lr", lr, "peak learning rate, > 0");
    v("min_lr", min_lr, "learning rate at the end of the decay (the floor), in [0, lr]");
    v("beta1", beta1, "first-moment decay, in [0, 1)");
    v("beta2", beta2, "second-moment decay, in [0, 1)");
    v("eps", eps, "added to the root of the second moment, > 0");
    v("weight_decay", weight_decay, "decoupled weight decay, >= 0");
    v("decay_embeddings", decay_embeddings, "apply weight decay to token and position embeddings");
    v("decay_norms_and_biases", decay_norms_and_biases, "apply weight decay to norm weights and biases");
    v("grad_clip", grad_clip, "clip the global gradient norm to this value, >= 0; 0 = off");
    v("schedule", schedule, "constant | cosine | linear: decay from lr to min_lr after warmup");
    v("warmup_steps", warmup_steps, "linear warmup from 0 to lr over this many steps, >= 0");
    v("decay_steps", decay_steps, "step at which the decay reaches min_lr, >= 0; 0 = train.max_steps");
    v("adafactor_decay_rate", adafactor_decay_rate,
      "adafactor: the second moment's decay at step t is 1 - t^rate, rate < 0");
    v("adafactor_clip", adafactor_clip, "adafactor: the update's RMS is clipped to this, > 0");
    v("adafactor_momentum", adafactor_momentum, "adafactor: keep a first moment of the update (decay optim.beta1)");
    v("adafactor_scale_parameter", adafactor_scale_parameter,
      "adafactor: scale the learning rate by max(1e-3, RMS of the parameter)");
    v("adafactor_relative_step", adafactor_relative_step,
      "adafactor: the learning rate is min(1e-2, 1 / sqrt(step)) instead of the schedule's (Adafactor's relative "
      "step size)");
    v("rank", rank,
      "apollo, galore_adamw, coap_adamw: the projection rank (capped by the matrix's smaller side), >= 1; "
      "apollo_mini uses 1");
    v("update_proj_gap", update_proj_gap,
      "apollo, apollo_mini, galore_adamw: steps between new projections (random, or a new SVD), >= 1");
    v("apollo_scale", apollo_scale,
      "apollo, apollo_mini: the update is multiplied by its square root (as the reference code does), >= 0; 0 = 1 "
      "(apollo) or 128 (mini)");
    v("apollo_norm_growth", apollo_norm_growth,
      "apollo, apollo_mini: the scaled gradient's norm grows at most this factor per step, >= 1");
    v("galore_scale", galore_scale, "galore_adamw: the projected-back update's scale (GaLore's alpha), > 0");
    v("galore_int8_projection", galore_int8_projection,
      "galore_adamw: keep each projection as int8 with an fp32 absmax per singular vector (Q-GaLore)");
    v("smmf_decay_rate", smmf_decay_rate,
      "smmf: the second moment's decay at step t is 1 - t^rate (the paper's gamma), in [-1, 0)");
    v("smmf_growth_rate", smmf_growth_rate,
      "smmf: the first moment's decay at step t is optim.beta1 * rate^(t-1) (the paper's lambda), in (0, 1]");
    v("coap_update_interval", coap_update_interval,
      "coap_adamw: steps between updates of each projection (COAP's T_u), >= 1");
    v("coap_reproject_factor", coap_reproject_factor,
      "coap_adamw: every this many updates the projection is recomputed by a randomized SVD instead (COAP's "
      "lambda), >= 1");
    v("coap_scale", coap_scale, "coap_adamw: the projected-back update's scale, > 0");
    v("lisa_layers", lisa_layers,
      "LISA (layerwise importance sampling): > 0 trains the embeddings, the final norm and the head always and only "
      "this many blocks, drawn at random (the same on every rank) each optim.lisa_interval steps, whose optimizer "
      "state exists only while they train (fresh each period); adamw or adamw8bit; 0 = off");
    v("lisa_interval", lisa_interval, "LISA: steps between draws of the trained blocks (the paper's K), >= 1");
    v("zo_eps", zo_eps, "zo_sgd: the perturbation's scale (MeZO's epsilon: 1e-3 full-parameter, 1e-2 LoRA), > 0");
  }
  absl::Status validate() const;

  // decay_steps with 0 resolved to the run's max_steps.
  int64_t resolved_decay_steps(int64_t max_steps) const { return decay_steps == 0 ? max_steps : decay_steps; }
};

}  // namespace memtrain::optim
