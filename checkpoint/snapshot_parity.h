// The erasure coding of snapshot groups across ranks (SnapshotLayout says who is in which group and who holds which
// parity). Every rank's shard has the same length (the caller pads). Encoding: each member multiplies its shard by
// its column of the group's generator (one product per parity shard, ISA-L) and sends the products to the
// holders, which XOR what arrives: parity j = sum over members i of c_ji * d_i, the same bytes ErasureCode::encode
// computes from all the data in one place, with len bytes sent per member and parity shard. Rebuilding: the ranks
// whose shard (data, or a parity they hold) is lost receive k surviving shards of the group and decode. Both are
// collective over `comm` (every rank calls, in the same order) and count the bytes this rank sends.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/snapshot_layout.h"

namespace memtrain::checkpoint {

// parity[h] (len bytes each, one per layout.parity_held_by(rank), in that order) receives the parity this rank
// holds. `scratch` is working memory, grown as needed and best kept between calls (fresh pages are slow to touch).
// Returns the bytes this rank sent.
// MPI_Waitall that gives its core away between tests (sched_yield): snapshots are encoded by a background thread
// next to the training's threads, and a busy wait there would take a core from them. (Sleeping between tests
// instead slowed the transfers 3-5x: Open MPI's shared-memory transport moves large messages in fragments, each
// needing both sides to poll.)
absl::Status wait_politely(std::vector<MPI_Request>& reqs);

absl::StatusOr<int64_t> encode_parity(MPI_Comm comm, const SnapshotLayout& layout, const uint8_t* shard, int64_t len,
                                      uint8_t* const* parity, std::vector<uint8_t>& scratch);

// lost[r]: rank r's memory is gone (its data shard and the parity it held). Ranks marked lost get their data
// shard rebuilt into `shard` and their parity buffers into `parity` (sized as encode_parity makes them); the others
// send what they hold. DataLoss (on every rank) when some group lost more than m shards; nothing is written then.
// Returns the bytes this rank sent.
absl::StatusOr<int64_t> rebuild_lost(MPI_Comm comm, const SnapshotLayout& layout, const std::vector<bool>& lost,
                                     uint8_t* shard, int64_t len, std::vector<std::vector<uint8_t>>& parity);

}  // namespace memtrain::checkpoint
