#include "checkpoint/snapshot_parity.h"

#include <isa-l/erasure_code.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "checkpoint/erasure_code.h"
#include "core/status.h"

namespace memtrain::checkpoint {
namespace {

constexpr int kTagParity = 0x5e0000;  // + group * 256 + parity index: a product for a parity shard
constexpr int kTagRebuild = 0x5f0000;  // + group * 256 + shard index: a surviving shard for a rebuild

absl::Status mpi_ok(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(rc, text, &n);
  return absl::InternalError(absl::StrCat("snapshot ", what, ": ", std::string(text, n)));
}

// MPI counts are ints: messages go in pieces of at most 1 GiB.
constexpr int64_t kPiece = int64_t{1} << 30;

absl::Status send_all(MPI_Comm comm, const uint8_t* p, int64_t len, int to, int tag, std::vector<MPI_Request>& reqs) {
  for (int64_t at = 0; at < len; at += kPiece) {
    reqs.emplace_back();
    MEMTRAIN_RETURN_IF_ERROR(mpi_ok(MPI_Isend(p + at, static_cast<int>(std::min(kPiece, len - at)), MPI_BYTE, to, tag,
                                              comm, &reqs.back()),
                                    "send"));
  }
  return absl::OkStatus();
}

absl::Status recv_all(MPI_Comm comm, uint8_t* p, int64_t len, int from, int tag, std::vector<MPI_Request>& reqs) {
  for (int64_t at = 0; at < len; at += kPiece) {
    reqs.emplace_back();
    MEMTRAIN_RETURN_IF_ERROR(mpi_ok(MPI_Irecv(p + at, static_cast<int>(std::min(kPiece, len - at)), MPI_BYTE, from,
                                              tag, comm, &reqs.back()),
                                    "receive"));
  }
  return absl::OkStatus();
}


void xor_into(uint8_t* out, const uint8_t* in, int64_t len) {
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t a, b;
    std::memcpy(&a, out + i, 8);
    std::memcpy(&b, in + i, 8);
    a ^= b;
    std::memcpy(out + i, &a, 8);
  }
  for (; i < len; ++i) out[i] ^= in[i];
}

}  // namespace

absl::Status wait_politely(std::vector<MPI_Request>& reqs) {
  for (;;) {
    int done = 0;
    const int rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS || done) {
      reqs.clear();
      return mpi_ok(rc, "wait");
    }
    std::this_thread::yield();
  }
}

absl::StatusOr<int64_t> encode_parity(MPI_Comm comm, const SnapshotLayout& layout, const uint8_t* shard, int64_t len,
                                      uint8_t* const* parity, std::vector<uint8_t>& scratch) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const int m = layout.m();
  const int g = layout.group_of(rank), i = layout.index_in_group(rank);
  const SnapshotLayout::Group& group = layout.groups()[g];
  const int k = static_cast<int>(group.members.size());
  // scratch: this member's products c_ji * d_i for every parity shard j of its group, then one incoming product.
  if (static_cast<int64_t>(scratch.size()) < (m + 1) * len) scratch.resize(static_cast<size_t>((m + 1) * len));
  uint8_t* incoming = scratch.data() + m * len;
  if (m > 0) {
    MEMTRAIN_ASSIGN_OR_RETURN(const ErasureCode code, ErasureCode::create(k, m));
    std::vector<uint8_t> column(m);
    for (int j = 0; j < m; ++j) column[j] = code.generator_row(k + j)[i];
    std::vector<uint8_t> tables(32 * m);
    ec_init_tables(1, m, column.data(), tables.data());
    std::vector<uint8_t*> dst(m);
    for (int64_t at = 0; at < len; at += kPiece) {
      uint8_t* src = const_cast<uint8_t*>(shard) + at;  // ISA-L only reads it
      for (int j = 0; j < m; ++j) dst[j] = scratch.data() + j * len + at;
      ec_encode_data(static_cast<int>(std::min(kPiece, len - at)), 1, m, tables.data(), &src, dst.data());
    }
  }
  int64_t sent = 0;
  std::vector<MPI_Request> reqs;
  for (int j = 0; j < m; ++j) {
    MEMTRAIN_RETURN_IF_ERROR(send_all(comm, scratch.data() + j * len, len, group.parity_holders[j],
                                      kTagParity + g * 256 + j, reqs));
    sent += len;
  }
  // The parity this rank holds: the XOR of every member's product, the first received in place.
  const auto& held = layout.parity_held_by(rank);
  for (size_t h = 0; h < held.size(); ++h) {
    const auto [hg, j] = held[h];
    const auto& members = layout.groups()[hg].members;
    for (size_t x = 0; x < members.size(); ++x) {
      uint8_t* into = x == 0 ? parity[h] : incoming;
      std::vector<MPI_Request> r;
      MEMTRAIN_RETURN_IF_ERROR(recv_all(comm, into, len, members[x], kTagParity + hg * 256 + j, r));
      MEMTRAIN_RETURN_IF_ERROR(wait_politely(r));
      if (x > 0) xor_into(parity[h], incoming, len);
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(wait_politely(reqs));
  return sent;
}

absl::StatusOr<int64_t> rebuild_lost(MPI_Comm comm, const SnapshotLayout& layout, const std::vector<bool>& lost,
                                     uint8_t* shard, int64_t len, std::vector<std::vector<uint8_t>>& parity) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (!layout.tolerates(lost)) {
    return absl::DataLossError(absl::StrCat("a snapshot group lost more than its ", layout.m(),
                                            " parity shards can rebuild"));
  }
  const int m = layout.m();
  if (lost[rank]) parity.assign(layout.parity_held_by(rank).size(), std::vector<uint8_t>(len));
  int64_t sent = 0;
  std::vector<MPI_Request> reqs;
  for (size_t gi = 0; gi < layout.groups().size(); ++gi) {
    const SnapshotLayout::Group& group = layout.groups()[gi];
    const int k = static_cast<int>(group.members.size());
    // Shard s of the group: data s < k on members[s], parity s - k on parity_holders[s - k].
    auto holder = [&](int s) { return s < k ? group.members[s] : group.parity_holders[s - k]; };
    std::vector<int> needing, sources;
    for (int s = 0; s < k + m; ++s) (lost[holder(s)] ? needing : sources).push_back(s);
    if (needing.empty()) continue;
    sources.resize(k);  // any k survivors
    // Every rank that lost a shard of this group gets the k sources (once, however many of its shards are lost).
    std::vector<int> receivers;
    for (int s : needing) {
      if (std::find(receivers.begin(), receivers.end(), holder(s)) == receivers.end()) receivers.push_back(holder(s));
    }
    auto my_copy = [&](int s) -> uint8_t* {
      if (s < k) return shard;
      const auto& held = layout.parity_held_by(rank);
      const auto it = std::find(held.begin(), held.end(), std::pair<int, int>(static_cast<int>(gi), s - k));
      MEMTRAIN_CHECK(it != held.end());
      return parity[it - held.begin()].data();
    };
    for (int s : sources) {
      if (holder(s) != rank) continue;
      for (int to : receivers) {
        MEMTRAIN_RETURN_IF_ERROR(send_all(comm, my_copy(s), len, to, kTagRebuild + static_cast<int>(gi) * 256 + s,
                                          reqs));
        sent += len;
      }
    }
    if (std::find(receivers.begin(), receivers.end(), rank) == receivers.end()) continue;
    std::vector<std::vector<uint8_t>> all(k + m);
    std::vector<bool> present(k + m, false);
    std::vector<MPI_Request> r;
    for (int s : sources) {
      all[s].resize(len);
      present[s] = true;
      MEMTRAIN_RETURN_IF_ERROR(recv_all(comm, all[s].data(), len, holder(s), kTagRebuild + static_cast<int>(gi) * 256 + s, r));
    }
    MEMTRAIN_RETURN_IF_ERROR(wait_politely(r));
    for (int s = 0; s < k + m; ++s) {
      if (!present[s]) all[s].resize(len);
    }
    std::vector<uint8_t*> ptrs(k + m);
    for (int s = 0; s < k + m; ++s) ptrs[s] = all[s].data();
    MEMTRAIN_ASSIGN_OR_RETURN(const ErasureCode code, ErasureCode::create(k, m));
    MEMTRAIN_RETURN_IF_ERROR(code.rebuild(len, ptrs.data(), present));
    for (int s : needing) {
      if (holder(s) == rank) std::memcpy(my_copy(s), all[s].data(), static_cast<size_t>(len));
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(wait_politely(reqs));
  return sent;
}

}  // namespace memtrain::checkpoint
