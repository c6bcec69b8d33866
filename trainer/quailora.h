// QuAILoRA's initialisation (Lawton et al. 2024, "QuAILoRA: Quantization-Aware Initialization for LoRA"): in a
// QLoRA fine-tune the adapters start so that Q + s B A reproduces the unquantized weight W on the inputs the
// projection sees, instead of B = 0 (which leaves the whole quantization error in the model). With E = W - Q
// (out, in) and H = X X^T over the projection inputs X (in, N) of the run's first lora.calib_batches global batches,
// B and A minimise the calibrated error
//   f = ||(E - s B A) X||_F^2 = tr((E - s B A) H (E - s B A)^T),   s = alpha / r,
// starting from the rank-r SVD of E (the minimiser without X) and refined by lora.als_iters steps of alternating
// least squares, each an r x r solve:
//   B = (E H A^T) (A H A^T)^-1 / s,   A = (B^T B)^-1 B^T E / s   (the second needs no H: it minimises f for any H).
// Q stays as it is. Choices the paper's stored text does not settle (docs/plans/quailora_notes.md): X is what the
// quantized model itself (B = 0) feeds each projection in one forward per batch, as GPTQ takes its inputs from the
// quantized layers below; H is damped by 1% of its mean diagonal, as GPTQ damps its Hessian (without it, input
// directions the tokens barely reach leave the result to rounding: meshes summing H in another order then start
// from visibly different factors); the factors end balanced (A A^T = B^T B, as the SVD start is, by r x r matrix
// functions, which unlike singular vectors do not jump with rounding); r x r systems get a ridge of 1e-9 of their
// mean diagonal.
// Memory: H (in x in, fp32, workspace) for one group of targets at a time (at most 256 MiB of them, each group its
// own forward passes); world rank 0 reads the unquantized weights once more (as loading did) and solves in float64.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/data_parallel.h"
#include "trainer/distributed.h"
#include "trainer/run_data.h"
#include "trainer/session.h"

namespace memtrain::trainer {

// The calibrated error f with QLoRA's B = 0 (tr(E H E^T)) and with QuAILoRA's factors.
struct QuantizationError {
  double qlora = 0, quailora = 0;
};

// A (r, in) and B (out, r), row-major, from E (out, in) and H (in, in), row-major float64: the SVD start, `iters`
// ALS steps, balanced. `trace` (optional) gets f at the start and after each step. r > min(out, in) names lora.r.
absl::StatusOr<QuantizationError> quailora_factors(const double* E, const double* H, int64_t out, int64_t in,
                                                   int64_t r, double scale, int64_t iters, float* A, float* B,
                                                   std::vector<double>* trace = nullptr);

// Runs the calibration forwards (as evaluation does, through `engine`), then sets every rank's adapters (its
// shards or parts of the whole A and B world rank 0 computed). Collective over the world. Returns the errors summed
// over the adapted projections (world rank 0; zero elsewhere).
absl::StatusOr<QuantizationError> quailora_initialize(const Config& cfg, parallel::Communicator& world, MeshRun& run,
                                                      ModelBundle& bundle, parallel::DataParallel& engine,
                                                      const RunData& data);

}  // namespace memtrain::trainer
