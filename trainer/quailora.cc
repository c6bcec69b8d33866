#include "trainer/quailora.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/cpu/gemm.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/lora.h"
#include "model/nf4_weight.h"

namespace memtrain::trainer {
namespace {

using Matrix = std::vector<double>;

// H is damped by this share of its mean diagonal, as GPTQ damps its Hessian (percdamp): input directions the
// calibration tokens barely reach fall back towards the unweighted error instead of being left to rounding.
constexpr double kDamping = 0.01;

// Most H bytes one calibration group holds (a single larger target is a group of its own).
constexpr int64_t kGroupBytes = int64_t{256} << 20;

// C (m, n) = alpha op(A) op(B) + beta C, row-major float64.
void dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
           const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

double dot(const Matrix& x, const Matrix& y) {
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += x[i] * y[i];
  return sum;
}

// The balanced rank-r factors of M (out, in): M's top r singular triplets as s B A, B = U_r S_r^(1/2) / sqrt(s) and
// A = S_r^(1/2) V_r^T / sqrt(s). M is overwritten.
absl::Status svd_factors(Matrix& M, int64_t out, int64_t in, int64_t r, double s, double* A, double* B) {
  const int64_t k = std::min(out, in);
  Matrix sv(k), u(out * k), vt(k * in);
  const lapack_int info =
      LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', out, in, M.data(), in, sv.data(), u.data(), k, vt.data(), in);
  if (info != 0) return absl::InternalError(absl::StrCat("QuAILoRA: the SVD of a ", out, "x", in, " error failed"));
  for (int64_t i = 0; i < r; ++i) {
    // Each pair's sign fixed (U's largest entry positive, as sklearn's svd_flip does): the start depends on E alone,
    // which is the same on every mesh, but a fixed sign keeps it so across LAPACK builds.
    int64_t top = 0;
    for (int64_t o = 1; o < out; ++o)
      if (std::fabs(u[o * k + i]) > std::fabs(u[top * k + i])) top = o;
    const double c = std::copysign(std::sqrt(sv[i] / s), u[top * k + i]);
    for (int64_t j = 0; j < in; ++j) A[i * in + j] = c * vt[i * in + j];
    for (int64_t o = 0; o < out; ++o) B[o * r + i] = c * u[o * k + i];
  }
  return absl::OkStatus();
}

// S^p for a symmetric positive definite S (n, n), by its eigenvalues; false when S is singular to working precision.
bool symmetric_power(Matrix S, int64_t n, double p, Matrix& out) {
  Matrix w(n);
  if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', n, S.data(), n, w.data()) != 0) return false;  // ascending
  if (!(w[0] > 1e-14 * w[n - 1])) return false;
  out.assign(n * n, 0.0);
  for (int64_t e = 0; e < n; ++e) {
    const double f = std::pow(w[e], p);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] += f * S[i * n + e] * S[j * n + e];
  }
  return true;
}

// B M and M^-1 A with A A^T = B^T B afterwards (ALS leaves any invertible r x r mix between them): with G = B^T B
// and X = G^(1/2) A A^T G^(1/2), M = G^(-1/2) X^(1/4), so both become X^(1/2). Matrix functions, not singular
// vectors: a product whose singular values nearly coincide still gets the same factors from inputs that differ by
// rounding (an SVD would rotate them arbitrarily; Adam then trains them differently). Left as they are when B or
// the product is singular.
void balance(double* a, double* b, int64_t out, int64_t in, int64_t r) {
  Matrix G(r * r), K(r * r), X(r * r), tmp(r * r), M(r * r), M_inv(r * r);
  Matrix g_half, g_inv_half, x_quarter, x_inv_quarter;
  dgemm(true, false, r, r, out, 1.0, b, r, b, r, 0.0, G.data(), r);
  dgemm(false, true, r, r, in, 1.0, a, in, a, in, 0.0, K.data(), r);
  if (!symmetric_power(G, r, 0.5, g_half) || !symmetric_power(G, r, -0.5, g_inv_half)) return;
  dgemm(false, false, r, r, r, 1.0, g_half.data(), r, K.data(), r, 0.0, tmp.data(), r);
  dgemm(false, false, r, r, r, 1.0, tmp.data(), r, g_half.data(), r, 0.0, X.data(), r);
  if (!symmetric_power(X, r, 0.25, x_quarter) || !symmetric_power(X, r, -0.25, x_inv_quarter)) return;
  dgemm(false, false, r, r, r, 1.0, g_inv_half.data(), r, x_quarter.data(), r, 0.0, M.data(), r);
  dgemm(false, false, r, r, r, 1.0, x_inv_quarter.data(), r, g_half.data(), r, 0.0, M_inv.data(), r);
  Matrix b_new(out * r), a_new(r * in);
  dgemm(false, false, out, r, r, 1.0, b, r, M.data(), r, 0.0, b_new.data(), r);
  dgemm(false, false, r, in, r, 1.0, M_inv.data(), r, a, in, 0.0, a_new.data(), in);
  std::copy(b_new.begin(), b_new.end(), b);
  std::copy(a_new.begin(), a_new.end(), a);
}

// X M = R for X, in place of R (rows, r); M (r, r) symmetric positive semi-definite, given a ridge of 1e-9 of its
// mean diagonal (H may be singular: fewer calibration tokens than inputs).
absl::Status solve_right(Matrix M, int64_t r, double* R, int64_t rows) {
  double trace = 0;
  for (int64_t i = 0; i < r; ++i) trace += M[i * r + i];
  const double ridge = std::max(1e-9 * trace / static_cast<double>(r), std::numeric_limits<double>::min());
  for (int64_t i = 0; i < r; ++i) M[i * r + i] += ridge;
  // Row-major R (rows, r) is column-major R^T (r, rows): M X^T = R^T, M symmetric.
  const lapack_int info = LAPACKE_dposv(LAPACK_COL_MAJOR, 'U', r, rows, M.data(), r, R, r);
  if (info != 0) return absl::InternalError(absl::StrCat("QuAILoRA: an r x r system is not positive (", info, ")"));
  return absl::OkStatus();
}

// H += x^T x for a row-parallel projection's input: every tp rank's columns gathered, each pair of blocks added.
absl::Status add_split_gram(parallel::Communicator& tp, const model::ProjectionInput& in, float* H) {
  const int32_t mine[2] = {static_cast<int32_t>(in.in_offset), static_cast<int32_t>(in.in)};
  std::vector<int32_t> ranges(2 * tp.size());
  MEMTRAIN_RETURN_IF_ERROR(tp.all_gather(mine, ranges.data(), 2, DType::kI32));
  std::vector<int64_t> counts(tp.size()), starts(tp.size());
  int64_t total = 0;
  for (int q = 0; q < tp.size(); ++q) {
    starts[q] = total;
    total += counts[q] = in.N * ranges[2 * q + 1];
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor parts, Tensor::empty({total}, DType::kF32, MemCategory::kWorkspace));
  MEMTRAIN_RETURN_IF_ERROR(tp.all_gather_v(in.x, parts.f32(), counts, DType::kF32));
  for (int a = 0; a < tp.size(); ++a)
    for (int b = 0; b < tp.size(); ++b) {
      const int64_t na = ranges[2 * a + 1], nb = ranges[2 * b + 1];
      cpu::sgemm(true, false, na, nb, in.N, 1.0f, parts.f32() + starts[a], na, parts.f32() + starts[b], nb, 1.0f,
                 H + ranges[2 * a] * in.in_global + ranges[2 * b], in.in_global, ThreadPool::global());
    }
  return absl::OkStatus();
}

// Every rank's H (summed over its tokens) for the targets in `slot`, from forwards over the calibration batches.
absl::Status accumulate_grams(const Config& cfg, MeshRun& run, ModelBundle& bundle, parallel::DataParallel& engine,
                              const RunData& data, const std::map<const model::Param*, Tensor*>& slot) {
  parallel::Communicator& tp = run.mesh.comm(parallel::Axis::kTp);
  auto observe = [&](const model::ProjectionInput& in) -> absl::Status {
    auto it = slot.find(in.weight);
    if (it == slot.end()) return absl::OkStatus();
    float* H = it->second->f32();
    if (in.in != in.in_global) return add_split_gram(tp, in, H);
    cpu::sgemm(true, false, in.in, in.in, in.N, 1.0f, in.x, in.in, in.x, in.in, 1.0f, H, in.in, ThreadPool::global());
    return absl::OkStatus();
  };
  const int64_t B = cfg.train.batch_size, accum = cfg.train.grad_accum, dp_rank = run.dp().rank();
  MEMTRAIN_ASSIGN_OR_RETURN(Batch batch, data.make_batch(B));
  for (int64_t step = 0; step < cfg.lora.calib_batches; ++step) {
    for (int64_t micro = 0; micro < accum; ++micro) {
      const int64_t row = (dp_rank * accum + micro) * B;
      data.fill_train(step, row, row + B, batch);
      model::ActivationStore discard(/*keep=*/false);
      batch.apply(discard);
      discard.set_input_observer(observe);
      MEMTRAIN_RETURN_IF_ERROR(bundle.model->forward(batch.inputs, batch.targets, 0.0f, discard).status());
    }
  }
  engine.release_idle();  // ZeRO-3: a unit prefetched past the last
  return absl::OkStatus();
}

// World rank 0's factors for projection W from its summed H: E from the unquantized weight and its NF4 round trip
// (the whole matrix quantized, as loading quantized it, so on any mesh the same Q).
absl::StatusOr<QuantizationError> solve_target(const Config& cfg, const std::optional<HfModel>& hf,
                                               const model::Param& W, const Tensor& H, float* A, float* B) {
  const int64_t out = W.in_out ? W.shape[1] : W.shape[0], in = W.in_out ? W.shape[0] : W.shape[1];
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor whole, starting_whole_value(cfg, hf, W));
  std::vector<float> rows(out * in), q(out * in);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) rows[o * in + i] = W.in_out ? whole.f32()[i * out + o] : whole.f32()[o * in + i];
  absl::StatusOr<std::shared_ptr<const model::Nf4Weight>> nf4 = model::Nf4Weight::quantize(rows.data(), out, in);
  if (!nf4.ok()) return absl::InvalidArgumentError(absl::StrCat(W.name, ": ", nf4.status().message()));
  (*nf4)->dequantize(q.data());
  Matrix E(out * in), Hd(H.f32(), H.f32() + in * in);
  for (int64_t k = 0; k < out * in; ++k) E[k] = static_cast<double>(rows[k]) - q[k];
  double mean_diag = 0;
  for (int64_t i = 0; i < in; ++i) mean_diag += Hd[i * in + i] / static_cast<double>(in);
  for (int64_t i = 0; i < in; ++i) Hd[i * in + i] += kDamping * mean_diag;
  return quailora_factors(E.data(), Hd.data(), out, in, cfg.lora.r, cfg.lora.scale(), cfg.lora.als_iters, A, B);
}

}  // namespace

absl::StatusOr<QuantizationError> quailora_factors(const double* E, const double* H, int64_t out, int64_t in,
                                                   int64_t r, double scale, int64_t iters, float* A, float* B,
                                                   std::vector<double>* trace) {
  if (r > std::min(out, in)) {
    return config_error("lora.r", absl::StrCat(r, " exceeds the rank a ", out, "x", in, " quantization error has"));
  }
  const double s = scale;
  Matrix a(r * in), b(out * r);
  Matrix start(E, E + out * in);
  MEMTRAIN_RETURN_IF_ERROR(svd_factors(start, out, in, r, s, a.data(), b.data()));
  Matrix eh(out * in), ha(in * r), aha(r * r), ehat(out * r), bm(out * r), at(in * r), btb(r * r);
  dgemm(false, false, out, in, in, 1.0, E, in, H, in, 0.0, eh.data(), in);
  double ehe = 0;  // tr(E H E^T)
  for (int64_t k = 0; k < out * in; ++k) ehe += eh[k] * E[k];
  // H A^T, A H A^T and E H A^T for the current A: the B-step's terms and the objective's.
  auto a_terms = [&] {
    dgemm(false, true, in, r, in, 1.0, H, in, a.data(), in, 0.0, ha.data(), r);
    dgemm(false, false, r, r, in, 1.0, a.data(), in, ha.data(), r, 0.0, aha.data(), r);
    dgemm(false, true, out, r, in, 1.0, eh.data(), in, a.data(), in, 0.0, ehat.data(), r);
  };
  // f = tr(E H E^T) - 2 s <B, E H A^T> + s^2 tr(B (A H A^T) B^T).
  auto objective = [&] {
    a_terms();
    dgemm(false, false, out, r, r, 1.0, b.data(), r, aha.data(), r, 0.0, bm.data(), r);
    return ehe - 2 * s * dot(b, ehat) + s * s * dot(bm, b);
  };
  if (trace) trace->push_back(objective());
  for (int64_t it = 0; it < iters; ++it) {
    a_terms();
    for (int64_t k = 0; k < out * r; ++k) b[k] = ehat[k] / s;
    MEMTRAIN_RETURN_IF_ERROR(solve_right(aha, r, b.data(), out));
    // A^T = E^T B (B^T B)^-1 / s.
    dgemm(true, false, r, r, out, 1.0, b.data(), r, b.data(), r, 0.0, btb.data(), r);
    dgemm(true, false, in, r, out, 1.0 / s, E, in, b.data(), r, 0.0, at.data(), r);
    MEMTRAIN_RETURN_IF_ERROR(solve_right(btb, r, at.data(), in));
    for (int64_t i = 0; i < in; ++i)
      for (int64_t k = 0; k < r; ++k) a[k * in + i] = at[i * r + k];
    if (trace) trace->push_back(objective());
  }
  if (iters > 0) balance(a.data(), b.data(), out, in, r);
  std::copy(a.begin(), a.end(), A);
  std::copy(b.begin(), b.end(), B);
  return QuantizationError{ehe, objective()};
}

absl::StatusOr<QuantizationError> quailora_initialize(const Config& cfg, parallel::Communicator& world, MeshRun& run,
                                                      ModelBundle& bundle, parallel::DataParallel& engine,
                                                      const RunData& data) {
  const std::vector<model::AdaptedProjection> targets = model::adapted_projections(bundle.params);
  std::optional<HfModel> hf;  // world rank 0 solves: it needs the unquantized weights
  absl::Status read;
  if (world.rank() == 0) {
    absl::StatusOr<std::optional<HfModel>> weights = read_starting_weights(cfg);
    read = weights.status();
    if (weights.ok()) hf = *std::move(weights);
  }
  MEMTRAIN_RETURN_IF_ERROR(agree(world, read));
  QuantizationError total;
  const int64_t r = cfg.lora.r;
  for (size_t begin = 0, end = 0; begin < targets.size(); begin = end) {
    // A group: the next targets whose H fit in kGroupBytes (at least one).
    std::vector<Tensor> grams;
    std::map<const model::Param*, Tensor*> slot;
    int64_t bytes = 0;
    for (end = begin; end < targets.size(); ++end) {
      const int64_t in = targets[end].A->shape[1];
      if (end > begin && bytes + 4 * in * in > kGroupBytes) break;
      bytes += 4 * in * in;
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor H, Tensor::empty({in, in}, DType::kF32, MemCategory::kWorkspace));
      H.fill_zero();
      grams.push_back(std::move(H));
    }
    for (size_t k = begin; k < end; ++k) slot[targets[k].W] = &grams[k - begin];
    MEMTRAIN_RETURN_IF_ERROR(accumulate_grams(cfg, run, bundle, engine, data, slot));
    for (size_t k = begin; k < end; ++k) {
      const model::AdaptedProjection& t = targets[k];
      Tensor& H = grams[k - begin];
      MEMTRAIN_RETURN_IF_ERROR(
          run.data_parallel().all_reduce(H.f32(), H.f32(), H.numel(), DType::kF32, parallel::ReduceOp::kSum));
      std::vector<float> A0(r * t.A->shape[1]), B0(t.B->shape[0] * r);
      absl::Status solved;
      if (world.rank() == 0) {
        absl::StatusOr<QuantizationError> err = solve_target(cfg, hf, *t.W, H, A0.data(), B0.data());
        solved = err.status();
        if (err.ok()) total.qlora += err->qlora, total.quailora += err->quailora;
      }
      H = Tensor();
      MEMTRAIN_RETURN_IF_ERROR(agree(world, solved));
      MEMTRAIN_RETURN_IF_ERROR(world.broadcast(A0.data(), A0.size(), DType::kF32, 0));
      MEMTRAIN_RETURN_IF_ERROR(world.broadcast(B0.data(), B0.size(), DType::kF32, 0));
      store_global_value(*t.A, A0.data(), engine, bundle.params);
      store_global_value(*t.B, B0.data(), engine, bundle.params);
    }
  }
  return total;
}

}  // namespace memtrain::trainer
