#include "optim/matrix_owners.h"

#include <algorithm>
#include <array>

#include "core/status.h"

namespace memtrain::optim {
namespace {

enum Phase { kGrads = 0, kValuesIn = 1, kValuesOut = 2 };
enum Side { kRecv, kSend, kLocal };

// One piece that moves for member `me` in a phase: received or sent (peer), or copied by the owner itself.
struct Route {
  Phase phase;
  Side side;
  int peer;
  int tp;                      // the tp rank whose part the piece is of
  parallel::ShardSegment seg;  // the piece (seg.n == the part's numel for a whole local tensor)
  bool owner;                  // `me` owns the matrix: the piece meets the global copy
};

// Every route of member `me`, in the order both ends post them: by member, then by piece.
std::vector<Route> routes_of(const MatrixGroup& g, const std::vector<int>& owners, int me) {
  std::vector<Route> out;
  const int t_me = g.tp_of(me);
  for (int member = 0; member < g.members(); ++member) {
    const int t = g.tp_of(member);
    for (const parallel::ShardSegment& seg : g.pieces(member)) {
      const int o = owners[seg.entry];
      if (o < 0 || (member != me && o != me)) continue;
      const bool mine = o == me, primary = g.params[t][seg.entry]->tp.primary;
      // The gradient from one holder per element.
      if (primary) {
        if (member == me && mine) out.push_back({kGrads, kLocal, me, t, seg, true});
        else out.push_back({kGrads, mine ? kRecv : kSend, mine ? member : o, t, seg, mine});
      }
      // Values of the other tp parts (the owner has its own part whole, and all of a tensor tp does not split).
      if (g.tp > 1 && primary && t != g.tp_of(o) && g.params[t][seg.entry]->tp.dim >= 0)
        out.push_back({kValuesIn, mine ? kRecv : kSend, mine ? member : o, t, seg, mine});
      // The new values to every holder.
      if (member == me && mine) {
        if (g.tp > 1) out.push_back({kValuesOut, kLocal, me, t, seg, true});
      } else {
        out.push_back({kValuesOut, mine ? kSend : kRecv, mine ? member : o, t, seg, mine});
      }
    }
  }
  if (g.tp > 1) {  // the owner's own tp part of each of its matrices, whole from its full local values
    for (size_t e = 0; e < owners.size(); ++e) {
      if (owners[e] != me) continue;
      const int64_t n = g.layouts[t_me].entry_numel(static_cast<int>(e));
      out.push_back({kValuesIn, kLocal, me, t_me, parallel::ShardSegment{0, static_cast<int>(e), 0, n, 0, 0}, true});
    }
  }
  return out;
}

// The runs of `seg` of tp rank t's part in the global tensor, piece-relative.
template <class Run>
std::vector<Run> runs_of(const model::Param& part, const parallel::ShardSegment& seg) {
  std::vector<Run> runs;
  model::for_each_global_run(part, [&](int64_t local, int64_t global, int64_t len) {
    const int64_t lo = std::max(local, seg.offset), hi = std::min(local + len, seg.offset + seg.n);
    if (lo >= hi) return;
    const int64_t at = global + (lo - local);
    if (!runs.empty() && runs.back().local + runs.back().n == lo - seg.offset && runs.back().global + runs.back().n == at)
      runs.back().n += hi - lo;  // continues the last run (a split that keeps rows whole, or tp 1)
    else
      runs.push_back(Run{lo - seg.offset, at, hi - lo});
  });
  return runs;
}
struct PlainRun {
  int64_t local, global, n;
};

// Elements of the receive area: per phase, the owner's pieces that are more than one run of the global tensor.
int64_t staging_elements(const MatrixGroup& g, const std::vector<Route>& routes) {
  std::array<int64_t, 3> per_phase{};
  for (const Route& r : routes) {
    if (!r.owner || r.side == kLocal) continue;
    if (runs_of<PlainRun>(*g.params[r.tp][r.seg.entry], r.seg).size() > 1) per_phase[r.phase] += r.seg.n;
  }
  return *std::max_element(per_phase.begin(), per_phase.end());
}

// p as one process holds it: the global shape, whole.
std::unique_ptr<model::Param> global_view(const model::Param& p) {
  auto g = std::make_unique<model::Param>();
  g->name = p.name;
  g->shape = p.shape;
  g->local_shape = p.shape;
  g->kind = p.kind;
  g->init = p.init;
  g->unit = p.unit;
  return g;
}

}  // namespace

std::vector<parallel::ShardSegment> MatrixGroup::pieces(int member) const {
  const parallel::ShardLayout& layout = layouts[tp_of(member)];
  return sharded ? layout.segments_of_rank(member / tp) : layout.whole_entries();
}

std::vector<int> assign_matrix_owners(std::vector<int64_t> load, const std::vector<int64_t>& whole_numel) {
  std::vector<int> order;
  for (size_t e = 0; e < whole_numel.size(); ++e)
    if (whole_numel[e] > 0) order.push_back(static_cast<int>(e));
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return whole_numel[a] > whole_numel[b]; });
  std::vector<int> owners(whole_numel.size(), -1);
  for (int e : order) {
    const int m = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());  // lowest on ties
    owners[e] = m;
    load[m] += whole_numel[e];
  }
  return owners;
}

std::vector<int> assign_matrix_owners(const MatrixGroup& group, const OptimConfig& cfg) {
  const std::vector<const model::Param*>& first = group.params[0];
  std::vector<int64_t> whole(first.size(), 0), load(group.members(), 0);
  for (size_t e = 0; e < first.size(); ++e)
    if (needs_whole_tensor(*first[e], cfg)) whole[e] = shape_numel(first[e]->shape);
  for (int m = 0; m < group.members(); ++m)
    for (const parallel::ShardSegment& s : group.pieces(m))
      if (whole[s.entry] == 0) load[m] += s.n;
  return assign_matrix_owners(std::move(load), whole);
}

std::vector<MemberOptimizerBytes> matrix_owner_bytes(const MatrixGroup& group, const OptimConfig& cfg) {
  const std::vector<int> owners = assign_matrix_owners(group, cfg);
  std::vector<MemberOptimizerBytes> out(group.members());
  for (int m = 0; m < group.members(); ++m) {
    const int t = group.tp_of(m);
    for (const parallel::ShardSegment& s : group.pieces(m)) {
      if (owners[s.entry] < 0)
        out[m].state += optimizer_state_bytes({group.params[t][s.entry], nullptr, nullptr, s.n, s.offset}, cfg);
    }
    for (size_t e = 0; e < owners.size(); ++e) {
      if (owners[e] != m) continue;
      const std::unique_ptr<model::Param> whole = global_view(*group.params[t][e]);
      const int64_t n = shape_numel(whole->shape);
      out[m].state += optimizer_state_bytes({whole.get(), nullptr, nullptr, n, 0}, cfg);
      out[m].gradient_copy += 4 * n;
      if (group.tp > 1) out[m].value_copy += 4 * n;
    }
    out[m].staging = 4 * staging_elements(group, routes_of(group, owners, m));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Optimizer>> MatrixOwners::create(parallel::Communicator& comm,
                                                                 const MatrixGroup& group,
                                                                 const std::vector<parallel::LocalSegment>& owned,
                                                                 const std::vector<parallel::LocalSegment>& stored,
                                                                 const OptimConfig& cfg, uint64_t seed) {
  const int me = comm.rank(), t_me = group.tp_of(me);
  MEMTRAIN_CHECK(comm.size() == group.members());
  const std::vector<int> owners = assign_matrix_owners(group, cfg);
  const std::vector<const model::Param*>& params = group.params[t_me];
  std::unique_ptr<MatrixOwners> opt(new MatrixOwners(comm));

  // This rank's engine pieces and full local values, by entry.
  std::vector<const parallel::LocalSegment*> piece_of(params.size(), nullptr);
  std::vector<float*> full_value(params.size(), nullptr);
  for (const parallel::LocalSegment& s : owned) piece_of[s.seg.entry] = &s;
  for (const parallel::LocalSegment& s : stored) {
    MEMTRAIN_CHECK(s.seg.offset == 0 && s.seg.n == shape_numel(params[s.seg.entry]->local_shape));  // ZeRO 0-2
    full_value[s.seg.entry] = s.value;
  }

  // The global copies of the matrices this rank owns (the value is the engine's own without tp).
  int64_t copy_elements = 0;
  for (size_t e = 0; e < owners.size(); ++e)
    if (owners[e] == me) copy_elements += shape_numel(params[e]->shape);
  MEMTRAIN_ASSIGN_OR_RETURN(opt->gradient_copy_, Tensor::zeros({copy_elements}, DType::kF32, MemCategory::kGradients));
  if (group.tp > 1) {
    MEMTRAIN_ASSIGN_OR_RETURN(opt->value_copy_,
                              Tensor::zeros({copy_elements}, DType::kF32, MemCategory::kParameters));
  }
  std::vector<float*> grad_global(params.size(), nullptr), value_global(params.size(), nullptr);
  std::vector<OptimTarget> targets;
  for (const parallel::ShardSegment& s : group.pieces(me)) {
    if (owners[s.entry] >= 0) continue;
    targets.push_back({params[s.entry], piece_of[s.entry]->value, piece_of[s.entry]->grad, s.n, s.offset});
  }
  int64_t at = 0;
  for (size_t e = 0; e < owners.size(); ++e) {
    if (owners[e] != me) continue;
    grad_global[e] = opt->gradient_copy_.f32() + at;
    value_global[e] = group.tp > 1 ? opt->value_copy_.f32() + at : full_value[e];
    opt->global_params_.push_back(global_view(*params[e]));
    const model::Param* whole = opt->global_params_.back().get();
    targets.push_back({whole, value_global[e], grad_global[e], shape_numel(whole->shape), 0});
    at += shape_numel(whole->shape);
  }

  // Routes to transfers: pointers into the engine (holder side) or the global copies (owner side).
  const std::vector<Route> routes = routes_of(group, owners, me);
  MEMTRAIN_ASSIGN_OR_RETURN(opt->staging_, Tensor::zeros({staging_elements(group, routes)}, DType::kF32,
                                                         MemCategory::kCommunication));
  std::array<Phase*, 3> phases = {&opt->grads_, &opt->values_in_, &opt->values_out_};
  std::array<int64_t, 3> staged{};
  for (const Route& r : routes) {
    const int e = r.seg.entry;
    const int tag = 3 * e + r.phase;
    Transfer t{r.peer, tag, nullptr, r.seg.n, nullptr, {}};
    if (r.owner) {
      t.global = r.phase == kGrads ? grad_global[e] : value_global[e];
      t.runs = runs_of<Run>(*group.params[r.tp][e], r.seg);
    }
    if (r.side == kLocal) {  // the owner's own piece, or (values in) its whole tp part
      t.data = r.phase == kValuesIn ? full_value[e] : r.phase == kGrads ? piece_of[e]->grad : piece_of[e]->value;
      phases[r.phase]->local.push_back(std::move(t));
      continue;
    }
    if (r.owner) {
      if (t.runs.size() == 1) {
        t.data = t.global + t.runs[0].global;  // straight into (or out of) the global copy
        t.runs.clear();
      } else {
        t.data = opt->staging_.f32() + staged[r.phase];
        staged[r.phase] += r.seg.n;
      }
    } else {
      t.data = r.phase == kGrads ? piece_of[e]->grad : piece_of[e]->value;
    }
    (r.side == kRecv ? phases[r.phase]->recvs : phases[r.phase]->sends).push_back(std::move(t));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(opt->inner_, create_optimizer(std::move(targets), cfg, seed));
  return std::unique_ptr<Optimizer>(std::move(opt));
}

absl::Status MatrixOwners::run_phase(Phase& phase, bool to_global) {
  auto scatter = [](const Transfer& t) {
    for (const Run& r : t.runs) std::copy_n(t.data + r.local, r.n, t.global + r.global);
  };
  auto gather = [](Transfer& t) {
    for (const Run& r : t.runs) std::copy_n(t.global + r.global, r.n, t.data + r.local);
  };
  if (!to_global) {
    for (Transfer& t : phase.sends) gather(t);  // no runs: sent straight from where it lies
  }
  std::vector<parallel::CommHandle> handles;
  for (Transfer& t : phase.recvs) handles.push_back(comm_.recv_async(t.data, t.n, DType::kF32, t.peer, t.tag));
  for (Transfer& t : phase.sends) handles.push_back(comm_.send_async(t.data, t.n, DType::kF32, t.peer, t.tag));
  for (Transfer& t : phase.local) to_global ? scatter(t) : gather(t);
  for (parallel::CommHandle& h : handles) MEMTRAIN_RETURN_IF_ERROR(h.wait());
  if (to_global) {
    for (const Transfer& t : phase.recvs) scatter(t);
  }
  return absl::OkStatus();
}

absl::Status MatrixOwners::step(double lr) {
  MEMTRAIN_RETURN_IF_ERROR(run_phase(grads_, /*to_global=*/true));
  MEMTRAIN_RETURN_IF_ERROR(run_phase(values_in_, /*to_global=*/true));
  MEMTRAIN_RETURN_IF_ERROR(inner_->step(lr));
  return run_phase(values_out_, /*to_global=*/false);
}

absl::StatusOr<Optimizer::CheckpointStates> MatrixOwners::checkpoint_state() {
  MEMTRAIN_ASSIGN_OR_RETURN(CheckpointStates states, inner_->checkpoint_state());
  for (CheckpointArray& a : states.arrays) {
    for (const auto& g : global_params_) a.whole = a.whole || a.target.param == g.get();
  }
  return states;
}

}  // namespace memtrain::optim
