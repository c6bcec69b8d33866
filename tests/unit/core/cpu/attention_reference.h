// Naive float64 attention and its analytic backward, the reference the CPU attention kernels are checked against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace memtrain::attention_ref {

struct Dims {
  int64_t B, T, H, Hkv, D;
};

inline std::vector<float> random_floats(int64_t n, float amplitude, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, amplitude);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& e : x) e = dist(rng);
  return x;
}

// Copies rows of `width` floats at stride ld into a contiguous float64 tensor.
inline std::vector<double> gather(const float* p, int64_t ld, int64_t rows, int64_t width) {
  std::vector<double> x(static_cast<size_t>(rows * width));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) x[r * width + c] = p[r * ld + c];
  return x;
}

// ||a - b|| / ||b|| over the whole tensor: one number that does not blow up on entries that happen to be near 0.
inline double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / std::max(den, 1e-300));
}

// Naive float64 attention (causal, or every key visible) on contiguous (B, T, H, D) / (B, T, Hkv, D) tensors: the full score row, masked
// by skipping keys after the query, one softmax.
inline void ref_forward(const Dims& s, const std::vector<double>& q, const std::vector<double>& k,
                 const std::vector<double>& v, std::vector<double>* out, std::vector<double>* lse,
                 bool causal = true) {
  const int64_t rep = s.H / s.Hkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  out->assign(s.B * s.T * s.H * s.D, 0.0);
  lse->assign(s.B * s.H * s.T, 0.0);
  std::vector<double> p(s.T);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t t = 0; t < s.T; ++t) {
        const int64_t last = causal ? t : s.T - 1;  // the last key the query sees
        const double* qr = &q[((b * s.T + t) * s.H + h) * s.D];
        double mx = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          const double* kr = &k[((b * s.T + j) * s.Hkv + h / rep) * s.D];
          double dot = 0;
          for (int64_t d = 0; d < s.D; ++d) dot += qr[d] * kr[d];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= last; ++j) sum += (p[j] = std::exp(p[j] - mx));
        double* o = &(*out)[((b * s.T + t) * s.H + h) * s.D];
        for (int64_t j = 0; j <= last; ++j) {
          const double* vr = &v[((b * s.T + j) * s.Hkv + h / rep) * s.D];
          for (int64_t d = 0; d < s.D; ++d) o[d] += p[j] / sum * vr[d];
        }
        (*lse)[(b * s.H + h) * s.T + t] = mx + std::log(sum);
      }
}

// Analytic float64 backward of the naive attention (validated against finite differences below).
inline void ref_backward(const Dims& s, const std::vector<double>& q, const std::vector<double>& k,
                  const std::vector<double>& v, const std::vector<double>& dout, std::vector<double>* dq,
                  std::vector<double>* dk, std::vector<double>* dv, bool causal = true) {
  const int64_t rep = s.H / s.Hkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  dq->assign(q.size(), 0.0), dk->assign(k.size(), 0.0), dv->assign(v.size(), 0.0);
  std::vector<double> p(s.T), dp(s.T);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t t = 0; t < s.T; ++t) {
        const int64_t last = causal ? t : s.T - 1;
        const int64_t qi = ((b * s.T + t) * s.H + h) * s.D;
        auto kv = [&](int64_t j) { return ((b * s.T + j) * s.Hkv + h / rep) * s.D; };
        double mx = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.D; ++d) dot += q[qi + d] * k[kv(j) + d];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= last; ++j) sum += (p[j] = std::exp(p[j] - mx));
        double delta = 0;
        for (int64_t j = 0; j <= last; ++j) {
          p[j] /= sum;
          double dot = 0;
          for (int64_t d = 0; d < s.D; ++d) dot += dout[qi + d] * v[kv(j) + d];
          dp[j] = dot;
          delta += p[j] * dot;
        }
        for (int64_t j = 0; j <= last; ++j) {
          const double ds = p[j] * (dp[j] - delta) * scale;
          for (int64_t d = 0; d < s.D; ++d) {
            (*dv)[kv(j) + d] += p[j] * dout[qi + d];
            (*dq)[qi + d] += ds * k[kv(j) + d];
            (*dk)[kv(j) + d] += ds * q[qi + d];
          }
        }
      }
}

}  // namespace memtrain::attention_ref
