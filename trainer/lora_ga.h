// LoRA-GA's initialisation (Wang et al. 2024, "LoRA-GA: Low-Rank Adaptation with Gradient Approximation"; the
// reference code's defaults, direction "ArB2r" and scale "stable"): the adapters start so that their first updates
// follow the full fine-tuning gradient's leading directions. G, the gradient of the loss with respect to each adapted
// projection weight, is averaged over the run's first lora.ga_batches global batches (every rank its rows of them,
// as training reads them: summed over dp and cp, gathered over tp); with G = U S V^T (out, in), A0 = V^T[0:r] and
// B0 = U[:, r:2r], each times out^(1/4) / sqrt(lora.ga_gamma), and the base becomes W0 - (alpha / r) B0 A0, so the
// model starts as the base computes. The changed base is in checkpoints and the run saves the merged model.
// Memory: the adapted weights' dense gradients exist once, during the estimate (workspace).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "parallel/data_parallel.h"
#include "trainer/distributed.h"
#include "trainer/run_data.h"
#include "trainer/session.h"

namespace memtrain::trainer {

// A0 (r, in) and B0 (out, r), row-major, from G (out, in), row-major: the singular vectors above, scaled. Needs
// 2r <= min(out, in) (the error names lora.r).
absl::Status lora_ga_factors(const float* G, int64_t out, int64_t in, int64_t r, double gamma, float* A, float* B);

// Runs the estimate (forward and backward through `engine`, as training steps do, without an update), then sets
// every rank's adapters and base. Collective over the world. The adapters' gradients it leaves are discarded by
// the next step's begin_micro_batch(0).
absl::Status lora_ga_initialize(const Config& cfg, parallel::Communicator& world, MeshRun& run, ModelBundle& bundle,
                                parallel::DataParallel& engine, const RunData& data);

}  // namespace memtrain::trainer
