#include "checkpoint/erasure_code.h"

#include <isa-l/erasure_code.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::checkpoint {

absl::StatusOr<ErasureCode> ErasureCode::create(int k, int m) {
  if (k < 1 || m < 0 || k + m > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("erasure code needs 1 <= k, 0 <= m and k + m <= 256, got k = ", k, ", m = ", m));
  }
  ErasureCode code(k, m);
  code.generator_.resize(static_cast<size_t>(k + m) * k);
  gf_gen_cauchy1_matrix(code.generator_.data(), k + m, k);
  if (m > 0) {
    code.encode_tables_.resize(static_cast<size_t>(32) * k * m);
    ec_init_tables(k, m, code.generator_.data() + static_cast<size_t>(k) * k, code.encode_tables_.data());
  }
  return code;
}

void ErasureCode::encode(int64_t len, const uint8_t* const* data, uint8_t* const* parity) const {
  if (m_ == 0 || len == 0) return;
  constexpr int64_t kPiece = int64_t{1} << 30;  // ISA-L takes an int length
  std::vector<uint8_t*> in(k_), out(m_);
  for (int64_t at = 0; at < len; at += kPiece) {
    for (int i = 0; i < k_; ++i) in[i] = const_cast<uint8_t*>(data[i]) + at;  // ISA-L only reads them
    for (int j = 0; j < m_; ++j) out[j] = parity[j] + at;
    ec_encode_data(static_cast<int>(std::min(kPiece, len - at)), k_, m_,
                   const_cast<uint8_t*>(encode_tables_.data()), in.data(), out.data());
  }
}

void ErasureCode::apply(const std::vector<uint8_t>& rows, int64_t len, const uint8_t* const* in,
                        uint8_t* const* out) const {
  const int n = static_cast<int>(rows.size()) / k_;
  std::vector<uint8_t> tables(static_cast<size_t>(32) * k_ * n);
  ec_init_tables(k_, n, const_cast<uint8_t*>(rows.data()), tables.data());
  constexpr int64_t kPiece = int64_t{1} << 30;
  std::vector<uint8_t*> src(k_), dst(n);
  for (int64_t at = 0; at < len; at += kPiece) {
    for (int i = 0; i < k_; ++i) src[i] = const_cast<uint8_t*>(in[i]) + at;
    for (int j = 0; j < n; ++j) dst[j] = out[j] + at;
    ec_encode_data(static_cast<int>(std::min(kPiece, len - at)), k_, n, tables.data(), src.data(), dst.data());
  }
}

absl::Status ErasureCode::rebuild(int64_t len, uint8_t* const* shards, const std::vector<bool>& present) const {
  MEMTRAIN_CHECK(static_cast<int>(present.size()) == k_ + m_);
  std::vector<int> survivors, lost;
  for (int i = 0; i < k_ + m_; ++i) (present[i] ? survivors : lost).push_back(i);
  if (lost.empty()) return absl::OkStatus();
  if (static_cast<int>(lost.size()) > m_) {
    return absl::DataLossError(absl::StrCat(lost.size(), " of ", k_ + m_, " shards lost; a code with ", m_,
                                            " parity shards rebuilds at most ", m_));
  }
  survivors.resize(k_);  // any k of them determine the data
  // The survivors' generator rows, inverted, give the data from the survivors: data = S^-1 * survivors.
  std::vector<uint8_t> s(static_cast<size_t>(k_) * k_), inverse(s.size());
  for (int r = 0; r < k_; ++r) std::copy_n(generator_row(survivors[r]), k_, s.data() + static_cast<size_t>(r) * k_);
  MEMTRAIN_CHECK_MSG(gf_invert_matrix(s.data(), inverse.data(), k_) == 0, "a Cauchy code's submatrix is singular");
  // A lost shard's row over the survivors: its generator row times S^-1 (a data shard's is simply a row of S^-1).
  std::vector<uint8_t> rows(lost.size() * static_cast<size_t>(k_));
  for (size_t e = 0; e < lost.size(); ++e) {
    const uint8_t* g = generator_row(lost[e]);
    for (int c = 0; c < k_; ++c) {
      uint8_t v = 0;
      for (int i = 0; i < k_; ++i) v ^= gf_mul(g[i], inverse[static_cast<size_t>(i) * k_ + c]);
      rows[e * k_ + c] = v;
    }
  }
  std::vector<const uint8_t*> in(k_);
  for (int r = 0; r < k_; ++r) in[r] = shards[survivors[r]];
  std::vector<uint8_t*> out(lost.size());
  for (size_t e = 0; e < lost.size(); ++e) out[e] = shards[lost[e]];
  apply(rows, len, in.data(), out.data());
  return absl::OkStatus();
}

}  // namespace memtrain::checkpoint
