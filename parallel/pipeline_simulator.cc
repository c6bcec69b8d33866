#include "parallel/pipeline_simulator.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::parallel {
namespace {

enum class Done { kForward, kInput, kWeight, kActivationIn, kGradIn };

// A message in flight: (is gradient, micro-batch, receiving stage) -> (sender rank, arrival time).
using MessageKey = std::tuple<bool, int, int>;

}  // namespace

absl::StatusOr<PipelineTimeline> simulate_pipeline(const PipelineSchedule& sched, const PipelineCosts& costs) {
  const PipelineShape& s = sched.shape;
  const int p = s.ranks, S = s.stages();
  std::map<MessageKey, std::pair<int, double>> messages;
  // What each rank has done, per (what, micro-batch, chunk).
  std::vector<std::set<std::tuple<Done, int, int>>> done(p);
  std::vector<size_t> next(p, 0);
  std::vector<double> clock(p, 0), busy(p, 0);
  std::vector<int> in_flight(p, 0);
  // Per rank and chunk: forwards not yet backward, and input halves whose weight half has not run.
  std::vector<std::vector<int>> forwarded(p, std::vector<int>(s.chunks)), awaiting_weight = forwarded;
  PipelineTimeline tl;
  tl.peak_in_flight.assign(p, 0);
  tl.held_at_backward.resize(p);

  // Runs rank r's next action if it can; false when it waits for a message. Errors for a wrong list.
  auto step = [&](int r) -> absl::StatusOr<bool> {
    const PipeAction& a = sched.actions[r][next[r]];
    const int stage = s.stage_of(r, a.chunk);
    auto where = [&] { return absl::StrCat("pipeline ", schedule_kind_name(s.kind), ": rank ", r, " action ", next[r],
                                           " (", describe(a), "): "); };
    auto has = [&](Done d, int chunk) { return done[r].count({d, a.micro_batch, chunk}) > 0; };
    auto mark = [&](Done d) -> absl::Status {
      if (!done[r].insert({d, a.micro_batch, a.chunk}).second) return absl::InternalError(where() + "runs twice");
      return absl::OkStatus();
    };
    // A stage's input is there when received, or with one rank when the previous chunk ran here.
    auto input_ready = [&] {
      return stage == 0 || (p > 1 ? has(Done::kActivationIn, a.chunk) : has(Done::kForward, a.chunk - 1));
    };
    auto output_grad_ready = [&] {
      return stage == S - 1 || (p > 1 ? has(Done::kGradIn, a.chunk) : has(Done::kInput, a.chunk + 1));
    };
    double cost = 0;
    switch (a.op) {
      case PipeOp::kForward:
        if (!input_ready()) return absl::InternalError(where() + "its input has not arrived");
        MEMTRAIN_RETURN_IF_ERROR(mark(Done::kForward));
        cost = costs.forward;
        tl.peak_in_flight[r] = std::max(tl.peak_in_flight[r], ++in_flight[r]);
        ++forwarded[r][a.chunk];
        break;
      case PipeOp::kBackward:
      case PipeOp::kBackwardInput:
        if (!has(Done::kForward, a.chunk)) return absl::InternalError(where() + "before its forward");
        if (!output_grad_ready()) return absl::InternalError(where() + "its output gradient has not arrived");
        MEMTRAIN_RETURN_IF_ERROR(mark(Done::kInput));
        tl.held_at_backward[r].push_back({a.chunk, forwarded[r], awaiting_weight[r]});
        --forwarded[r][a.chunk];
        cost = costs.backward_input;
        if (a.op == PipeOp::kBackward) {
          MEMTRAIN_RETURN_IF_ERROR(mark(Done::kWeight));
          cost += costs.backward_weight;
          --in_flight[r];
        } else {
          ++awaiting_weight[r][a.chunk];
        }
        break;
      case PipeOp::kBackwardWeight:
        if (!has(Done::kInput, a.chunk)) return absl::InternalError(where() + "before its input gradient");
        MEMTRAIN_RETURN_IF_ERROR(mark(Done::kWeight));
        cost = costs.backward_weight;
        --in_flight[r];
        --awaiting_weight[r][a.chunk];
        break;
      case PipeOp::kSendActivation:
      case PipeOp::kSendGrad: {
        const bool grad = a.op == PipeOp::kSendGrad;
        if (!has(grad ? Done::kInput : Done::kForward, a.chunk))
          return absl::InternalError(where() + "sends what it has not computed");
        const int to_stage = stage + (grad ? -1 : 1);
        if (to_stage < 0 || to_stage >= S || a.peer != to_stage % p)
          return absl::InternalError(where() + "no neighbouring stage on that rank");
        if (!messages.emplace(MessageKey{grad, a.micro_batch, to_stage}, std::pair{r, clock[r]}).second)
          return absl::InternalError(where() + "sent twice");
        break;
      }
      case PipeOp::kRecvActivation:
      case PipeOp::kRecvGrad: {
        const bool grad = a.op == PipeOp::kRecvGrad;
        auto it = messages.find({grad, a.micro_batch, stage});
        if (it == messages.end()) return false;  // wait
        if (it->second.first != a.peer) return absl::InternalError(where() + "the message comes from another rank");
        clock[r] = std::max(clock[r], it->second.second);
        messages.erase(it);
        MEMTRAIN_RETURN_IF_ERROR(mark(grad ? Done::kGradIn : Done::kActivationIn));
        break;
      }
    }
    clock[r] += cost;
    busy[r] += cost;
    ++next[r];
    return true;
  };

  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < p; ++r) {
      while (next[r] < sched.actions[r].size()) {
        MEMTRAIN_ASSIGN_OR_RETURN(bool ran, step(r));
        if (!ran) break;
        progress = true;
      }
    }
  }
  std::string stuck;
  for (int r = 0; r < p; ++r) {
    if (next[r] < sched.actions[r].size())
      absl::StrAppend(&stuck, " rank ", r, " waits at ", describe(sched.actions[r][next[r]]), ";");
  }
  if (!stuck.empty()) return absl::InternalError(absl::StrCat("pipeline deadlock:", stuck));
  if (!messages.empty()) {
    const auto& [key, from] = *messages.begin();
    return absl::InternalError(absl::StrCat("pipeline: rank ", from.first, " sends micro-batch ", std::get<1>(key),
                                            " to stage ", std::get<2>(key), ", which never receives it"));
  }
  for (int r = 0; r < p; ++r) {
    for (int c = 0; c < s.chunks; ++c) {
      for (int mb = 0; mb < s.micro_batches; ++mb) {
        for (Done d : {Done::kForward, Done::kInput, Done::kWeight}) {
          if (!done[r].count({d, mb, c}))
            return absl::InternalError(absl::StrCat("pipeline: rank ", r, " never runs micro-batch ", mb, " chunk ",
                                                    c, " fully"));
        }
      }
    }
  }
  tl.makespan = *std::max_element(clock.begin(), clock.end());
  double idle = 0;
  for (int r = 0; r < p; ++r) idle += tl.makespan - busy[r];
  tl.bubble_fraction = tl.makespan > 0 ? idle / (p * tl.makespan) : 0;
  return tl;
}

}  // namespace memtrain::parallel
