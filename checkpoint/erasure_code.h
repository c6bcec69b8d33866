// ErasureCode: systematic Reed-Solomon over GF(2^8) with ISA-L (Cauchy generator matrix): k data shards of equal
// length, m parity shards computed from them, and any m lost shards (data or parity) rebuilt from any k that
// survive. The snapshot groups of issue 11 use it: k ranks' snapshots protected by m parity shards held elsewhere.
// The generator is [I; C] with C Cauchy (c_ij = 1 / (i ^ j) over the field), so every k x k submatrix of it is
// invertible and the code is MDS for every k + m <= 256.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::checkpoint {

class ErasureCode {
 public:
  // 1 <= k, 0 <= m, k + m <= 256.
  static absl::StatusOr<ErasureCode> create(int k, int m);

  int k() const { return k_; }
  int m() const { return m_; }
  // The generator's row `row` (0..k+m-1): shard row = sum over i of row[i] * data[i] in GF(2^8).
  const uint8_t* generator_row(int row) const { return generator_.data() + static_cast<size_t>(row) * k_; }

  // parity[j] (j < m) from data[i] (i < k), `len` bytes each.
  void encode(int64_t len, const uint8_t* const* data, uint8_t* const* parity) const;
  // shards: k + m buffers of `len` bytes (data, then parity); `present[i]` says which hold their bytes. Rebuilds the
  // others in place. More than m missing: DataLoss naming how many were lost, and nothing is written.
  absl::Status rebuild(int64_t len, uint8_t* const* shards, const std::vector<bool>& present) const;

 private:
  ErasureCode(int k, int m) : k_(k), m_(m) {}
  // out[j] = sum over i of rows[j * k + i] * in[i], for j < rows.size() / k; ISA-L in pieces of at most 1 GiB.
  void apply(const std::vector<uint8_t>& rows, int64_t len, const uint8_t* const* in, uint8_t* const* out) const;

  int k_, m_;
  std::vector<uint8_t> generator_;  // (k + m) x k
  std::vector<uint8_t> encode_tables_;  // ISA-L's expanded tables for the parity rows
};

}  // namespace memtrain::checkpoint
