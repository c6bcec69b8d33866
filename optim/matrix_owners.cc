#include "optim/matrix_owners.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/status.h"

namespace memtrain::optim {

std::vector<int> assign_matrix_owners(const parallel::ShardLayout& layout, const std::vector<bool>& whole) {
  const int ranks = layout.ranks();
  std::vector<int64_t> load(ranks, 0);  // elements each rank updates
  for (int r = 0; r < ranks; ++r)
    for (const parallel::ShardSegment& s : layout.segments_of_rank(r))
      if (!whole[s.entry]) load[r] += s.n;
  std::vector<int> order;
  for (int e = 0; e < layout.num_entries(); ++e)
    if (whole[e]) order.push_back(e);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return layout.entry_numel(a) > layout.entry_numel(b); });
  std::vector<int> owners(layout.num_entries(), -1);
  for (int e : order) {
    const int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());  // lowest on ties
    owners[e] = r;
    load[r] += layout.entry_numel(e);
  }
  return owners;
}

RankUpdates updates_of_rank(const parallel::ShardLayout& layout, const std::vector<int>& owners, int rank) {
  RankUpdates u;
  for (const parallel::ShardSegment& s : layout.segments_of_rank(rank))
    if (owners[s.entry] < 0) u.pieces.push_back(s);
  for (int e = 0; e < layout.num_entries(); ++e) {
    if (owners[e] != rank) continue;
    u.whole.push_back(e);
    u.whole_elements += layout.entry_numel(e);
  }
  return u;
}

namespace {
std::vector<int> owners_for(const parallel::ShardLayout& layout, const std::vector<const model::Param*>& params,
                            const OptimConfig& cfg) {
  std::vector<bool> whole(params.size());
  for (size_t e = 0; e < params.size(); ++e) whole[e] = needs_whole_tensor(*params[e], cfg);
  return assign_matrix_owners(layout, whole);
}
}  // namespace

std::vector<RankOptimizerBytes> matrix_owner_bytes(const parallel::ShardLayout& layout,
                                                   const std::vector<const model::Param*>& params,
                                                   const OptimConfig& cfg) {
  const std::vector<int> owners = owners_for(layout, params, cfg);
  std::vector<RankOptimizerBytes> out(layout.ranks());
  for (int r = 0; r < layout.ranks(); ++r) {
    const RankUpdates u = updates_of_rank(layout, owners, r);
    for (const parallel::ShardSegment& s : u.pieces)
      out[r].state += optimizer_state_bytes({params[s.entry], nullptr, nullptr, s.n, s.offset}, cfg);
    for (int e : u.whole)
      out[r].state += optimizer_state_bytes({params[e], nullptr, nullptr, layout.entry_numel(e), 0}, cfg);
    out[r].gradient_copy = 4 * u.whole_elements;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Optimizer>> MatrixOwners::create(parallel::Communicator& dp,
                                                                 const parallel::ShardLayout& layout,
                                                                 const std::vector<const model::Param*>& params,
                                                                 const std::vector<parallel::LocalSegment>& owned,
                                                                 const std::vector<parallel::LocalSegment>& stored,
                                                                 const OptimConfig& cfg, uint64_t seed) {
  const int me = dp.rank();
  const std::vector<int> owners = owners_for(layout, params, cfg);
  const RankUpdates mine = updates_of_rank(layout, owners, me);
  std::unique_ptr<MatrixOwners> opt(new MatrixOwners(dp));
  MEMTRAIN_ASSIGN_OR_RETURN(opt->gradient_copy_,
                            Tensor::zeros({mine.whole_elements}, DType::kF32, MemCategory::kGradients));
  std::vector<const parallel::LocalSegment*> piece_of(layout.num_entries(), nullptr);  // this rank's, by entry
  std::vector<float*> full_value(layout.num_entries(), nullptr);
  for (const parallel::LocalSegment& s : owned) piece_of[s.seg.entry] = &s;
  for (const parallel::LocalSegment& s : stored) {
    MEMTRAIN_CHECK(s.seg.offset == 0 && s.seg.n == layout.entry_numel(s.seg.entry));  // stages 1-2: values whole
    full_value[s.seg.entry] = s.value;
  }

  std::vector<OptimTarget> targets;
  for (const parallel::ShardSegment& s : mine.pieces) {
    const parallel::LocalSegment& piece = *piece_of[s.entry];
    targets.push_back({params[s.entry], piece.value, piece.grad, s.n, s.offset});
  }
  // Whole matrices this rank owns: their gradient copy, and where every holder's piece of them goes.
  std::vector<float*> copy_of(layout.num_entries(), nullptr);
  int64_t at = 0;
  for (int e : mine.whole) {
    copy_of[e] = opt->gradient_copy_.f32() + at;
    targets.push_back({params[e], full_value[e], copy_of[e], layout.entry_numel(e), 0});
    at += layout.entry_numel(e);
  }
  for (int r = 0; r < layout.ranks(); ++r) {
    for (const parallel::ShardSegment& s : layout.segments_of_rank(r)) {
      const int owner = owners[s.entry];
      if (owner < 0 || (owner != me && r != me)) continue;
      if (owner == me && r == me) {
        opt->local_.push_back({piece_of[s.entry]->grad, copy_of[s.entry] + s.offset, s.n});
      } else if (owner == me) {
        opt->transfers_.push_back({r, s.entry, true, copy_of[s.entry] + s.offset, full_value[s.entry] + s.offset, s.n});
      } else {
        const parallel::LocalSegment& piece = *piece_of[s.entry];
        opt->transfers_.push_back({owner, s.entry, false, piece.grad, piece.value, s.n});
      }
    }
  }
  MEMTRAIN_ASSIGN_OR_RETURN(opt->inner_, create_optimizer(std::move(targets), cfg, seed));
  return std::unique_ptr<Optimizer>(std::move(opt));
}

absl::Status MatrixOwners::step(double lr) {
  // Gradient pieces to their owners.
  std::vector<parallel::CommHandle> handles;
  for (const Transfer& t : transfers_) {
    handles.push_back(t.owner ? dp_.recv_async(t.grad, t.n, DType::kF32, t.peer, t.tag)
                              : dp_.send_async(t.grad, t.n, DType::kF32, t.peer, t.tag));
  }
  for (const LocalCopy& c : local_) std::memcpy(c.to, c.from, sizeof(float) * c.n);
  for (parallel::CommHandle& h : handles) MEMTRAIN_RETURN_IF_ERROR(h.wait());
  MEMTRAIN_RETURN_IF_ERROR(inner_->step(lr));
  // The new values of every piece back to its holder.
  handles.clear();
  for (const Transfer& t : transfers_) {
    handles.push_back(t.owner ? dp_.send_async(t.value, t.n, DType::kF32, t.peer, t.tag)
                              : dp_.recv_async(t.value, t.n, DType::kF32, t.peer, t.tag));
  }
  for (parallel::CommHandle& h : handles) MEMTRAIN_RETURN_IF_ERROR(h.wait());
  return absl::OkStatus();
}

}  // namespace memtrain::optim
