#include "parallel/pipeline_schedule.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::parallel {
namespace {

struct Compute {
  PipeOp op;  // kForward, kBackward, kBackwardInput or kBackwardWeight
  int micro_batch, chunk;
};

// GPipe: all forwards, then all backwards in the same order.
std::vector<Compute> gpipe_order(const PipelineShape& s) {
  std::vector<Compute> order;
  for (int mb = 0; mb < s.micro_batches; ++mb) order.push_back({PipeOp::kForward, mb, 0});
  for (int mb = 0; mb < s.micro_batches; ++mb) order.push_back({PipeOp::kBackward, mb, 0});
  return order;
}

// 1F1B over a sequence of `total` (micro-batch, chunk) units, forward unit k = fwd(k), backward unit k = bwd(k):
// `warmup` forwards, then forward/backward pairs, then the remaining backwards.
template <class F, class B>
std::vector<Compute> one_f_one_b(int total, int warmup, F fwd, B bwd) {
  std::vector<Compute> order;
  warmup = std::min(warmup, total);
  for (int k = 0; k < warmup; ++k) order.push_back(fwd(k));
  for (int k = 0; k < total - warmup; ++k) {
    order.push_back(fwd(warmup + k));
    order.push_back(bwd(k));
  }
  for (int k = total - warmup; k < total; ++k) order.push_back(bwd(k));
  return order;
}

std::vector<Compute> one_f_one_b_order(const PipelineShape& s, int rank) {
  return one_f_one_b(
      s.micro_batches, s.ranks - rank - 1, [](int k) { return Compute{PipeOp::kForward, k, 0}; },
      [](int k) { return Compute{PipeOp::kBackward, k, 0}; });
}

// Megatron's interleaved schedule: virtual micro-batch k runs micro-batch (k / (p v)) p + k % p on chunk
// (k / p) % v forward, and on chunk v - 1 - (k / p) % v backward.
std::vector<Compute> interleaved_order(const PipelineShape& s, int rank) {
  const int p = s.ranks, v = s.chunks, total = s.micro_batches * v;
  auto mb = [=](int k) { return k / (p * v) * p + k % p; };
  // With as many micro-batches as ranks there is no steady state: everything warms up (as Megatron does).
  const int warmup = s.micro_batches == p ? total : (p - rank - 1) * 2 + (v - 1) * p;
  return one_f_one_b(
      total, warmup, [=](int k) { return Compute{PipeOp::kForward, mb(k), k / p % v}; },
      [=](int k) { return Compute{PipeOp::kBackward, mb(k), v - 1 - k / p % v}; });
}

// ZB-H1 (Qi et al., 2023): 1F1B's forwards and input gradients, with rank r's weight gradients running r
// micro-batches late - W(k) right after B(k + r), the last r at the end. Deferring them fills the later ranks'
// cool-down bubbles, and every rank holds at most p micro-batches (forward done, weight gradient not): the
// deepest 1F1B rank's peak. With equal costs the bubble falls from 1F1B's 3(p-1) time units to p-1.
std::vector<Compute> zero_bubble_order(const PipelineShape& s, int rank) {
  const int m = s.micro_batches;
  std::vector<Compute> order;
  for (const Compute& c : one_f_one_b_order(s, rank)) {
    if (c.op == PipeOp::kForward) {
      order.push_back(c);
      continue;
    }
    order.push_back({PipeOp::kBackwardInput, c.micro_batch, 0});
    if (c.micro_batch >= rank) order.push_back({PipeOp::kBackwardWeight, c.micro_batch - rank, 0});
  }
  for (int k = std::max(0, m - rank); k < m; ++k) order.push_back({PipeOp::kBackwardWeight, k, 0});
  return order;
}

// Inserts the point-to-point messages around a rank's compute order: a stage receives its input just before its
// forward and sends its output just after; backward receives its output gradient before and sends its input
// gradient after (the input-gradient half under zero bubble). Neighbouring stages are always on different ranks
// when p > 1; with p = 1 every hand-over stays on the rank.
std::vector<PipeAction> with_messages(const PipelineShape& s, int rank, const std::vector<Compute>& order) {
  const int p = s.ranks, S = s.stages();
  std::vector<PipeAction> out;
  for (const Compute& c : order) {
    const int stage = s.stage_of(rank, c.chunk);
    const bool first = stage == 0, last = stage == S - 1;
    const int prev = (rank + p - 1) % p, next = (rank + 1) % p;
    const bool talk = p > 1;
    switch (c.op) {
      case PipeOp::kForward:
        if (talk && !first) out.push_back({PipeOp::kRecvActivation, c.micro_batch, c.chunk, prev});
        out.push_back({c.op, c.micro_batch, c.chunk});
        if (talk && !last) out.push_back({PipeOp::kSendActivation, c.micro_batch, c.chunk, next});
        break;
      case PipeOp::kBackward:
      case PipeOp::kBackwardInput:
        if (talk && !last) out.push_back({PipeOp::kRecvGrad, c.micro_batch, c.chunk, next});
        out.push_back({c.op, c.micro_batch, c.chunk});
        if (talk && !first) out.push_back({PipeOp::kSendGrad, c.micro_batch, c.chunk, prev});
        break;
      default:
        out.push_back({c.op, c.micro_batch, c.chunk});
    }
  }
  return out;
}

}  // namespace

const char* schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kGPipe: return "gpipe";
    case ScheduleKind::kOneFOneB: return "1f1b";
    case ScheduleKind::kInterleaved: return "interleaved";
    case ScheduleKind::kZeroBubble: return "zb-h1";
  }
  return "?";
}

absl::StatusOr<ScheduleKind> parse_schedule_kind(std::string_view name) {
  for (ScheduleKind k : {ScheduleKind::kGPipe, ScheduleKind::kOneFOneB, ScheduleKind::kInterleaved,
                         ScheduleKind::kZeroBubble}) {
    if (name == schedule_kind_name(k)) return k;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown pipeline schedule \"", std::string(name), "\" (gpipe, 1f1b, interleaved or zb-h1)"));
}

const char* pipe_op_name(PipeOp op) {
  switch (op) {
    case PipeOp::kForward: return "forward";
    case PipeOp::kBackward: return "backward";
    case PipeOp::kBackwardInput: return "backward-input";
    case PipeOp::kBackwardWeight: return "backward-weight";
    case PipeOp::kSendActivation: return "send-activation";
    case PipeOp::kRecvActivation: return "recv-activation";
    case PipeOp::kSendGrad: return "send-grad";
    case PipeOp::kRecvGrad: return "recv-grad";
  }
  return "?";
}

std::string describe(const PipeAction& a) {
  static constexpr const char* kShort[] = {"F", "B", "B", "W", "sA", "rA", "sG", "rG"};
  std::string s = absl::StrCat(kShort[static_cast<int>(a.op)], a.micro_batch);
  if (a.chunk > 0) absl::StrAppend(&s, ".", a.chunk);
  if (a.peer >= 0) absl::StrAppend(&s, a.op == PipeOp::kSendActivation || a.op == PipeOp::kSendGrad ? ">" : "<", a.peer);
  return s;
}

absl::StatusOr<PipelineSchedule> make_pipeline_schedule(const PipelineShape& s) {
  const std::string kind = schedule_kind_name(s.kind);
  if (s.ranks < 1 || s.micro_batches < 1 || s.chunks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline ", kind, ": ranks, micro-batches and chunks must be >= 1"));
  }
  if (s.kind == ScheduleKind::kInterleaved) {
    if (s.chunks < 2) {
      return absl::InvalidArgumentError("pipeline interleaved: needs at least 2 model chunks per rank");
    }
    if (s.micro_batches % s.ranks != 0) {
      return absl::InvalidArgumentError(absl::StrCat("pipeline interleaved: ", s.micro_batches,
                                                     " micro-batches are not a multiple of the ", s.ranks,
                                                     " pipeline ranks"));
    }
  } else if (s.chunks != 1) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline ", kind, ": one model chunk per rank (got ", s.chunks,
                                                   "); more need the interleaved schedule"));
  }
  PipelineSchedule out{s, std::vector<std::vector<PipeAction>>(s.ranks)};
  for (int r = 0; r < s.ranks; ++r) {
    std::vector<Compute> order;
    switch (s.kind) {
      case ScheduleKind::kGPipe: order = gpipe_order(s); break;
      case ScheduleKind::kOneFOneB: order = one_f_one_b_order(s, r); break;
      case ScheduleKind::kInterleaved: order = interleaved_order(s, r); break;
      case ScheduleKind::kZeroBubble: order = zero_bubble_order(s, r); break;
    }
    out.actions[r] = with_messages(s, r, order);
  }
  return out;
}

}  // namespace memtrain::parallel
