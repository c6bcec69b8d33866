// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (norm over every parameter's gradient).
#pragma once

#include "model/params.h"

namespace memtrain::optim {

// The L2 norm over all gradients, summed in parameter order in double (deterministic).
double global_grad_norm(const model::ParamSet& params);
// Scales every gradient by max_norm / (norm + 1e-6) when that is < 1; returns the norm before clipping.
// max_norm <= 0 only measures.
double clip_grad_norm(model::ParamSet& params, double max_norm);
// The factor clipping multiplies gradients by: max_norm / (norm + 1e-6) when that is < 1 and max_norm > 0, else 1.
double clip_coefficient(double norm, double max_norm);

}  // namespace memtrain::optim
