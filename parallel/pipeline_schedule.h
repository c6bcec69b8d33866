// Pipeline schedules as data: for (stages, micro-batches, model chunks per rank, kind), the ordered list of actions
// each pp rank runs - forward, backward (or its input- and weight-gradient halves), and the point-to-point sends and
// receives of activations and gradients between neighbouring stages. The executor walks a rank's list; the
// simulator (pipeline_simulator.h) checks a list and measures its bubble and in-flight activations.
//
// Stages: with p ranks and v chunks per rank the model is cut into S = p * v stages; stage s runs on rank s % p as
// its chunk s / p (Megatron's interleaved placement; v = 1 is one stage per rank). Kinds:
//   GPipe        every forward, then every backward: m micro-batches in flight.
//   1F1B         rank r runs p - r - 1 warm-up forwards, then alternates forward and backward: at most p - r in
//                flight; bubble (p - 1) / (m + p - 1) of the time.
//   interleaved  1F1B over v chunks per rank in groups of p micro-batches (Megatron's virtual pipeline): the
//                bubble shrinks v times, in-flight chunks grow to 2(p - r - 1) + (v - 1)p + 1. m % p == 0.
//   zb-h1        zero bubble (Qi et al., ZB-H1): backward split into its input-gradient half (on the critical path)
//                and its weight-gradient half, which rank r runs r micro-batches late, filling what would be
//                bubbles: (p - 1) / (3m + p - 1) with equal costs; every rank holds up to p micro-batches (the
//                peak of 1F1B's first rank).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::parallel {

enum class ScheduleKind { kGPipe, kOneFOneB, kInterleaved, kZeroBubble };
const char* schedule_kind_name(ScheduleKind kind);  // "gpipe", "1f1b", "interleaved", "zb-h1"
absl::StatusOr<ScheduleKind> parse_schedule_kind(std::string_view name);

enum class PipeOp {
  kForward,
  kBackward,        // input and weight gradients together
  kBackwardInput,   // zero bubble: dL/d(input), sent on at once
  kBackwardWeight,  // zero bubble: dL/d(weights), deferred
  kSendActivation,  // this chunk's output to the next stage's rank
  kRecvActivation,  // this chunk's input from the previous stage's rank
  kSendGrad,        // dL/d(this chunk's input) to the previous stage's rank
  kRecvGrad,        // dL/d(this chunk's output) from the next stage's rank
};
const char* pipe_op_name(PipeOp op);

struct PipeAction {
  PipeOp op;
  int micro_batch;
  int chunk;      // which of the rank's chunks (the stage is chunk * ranks + rank)
  int peer = -1;  // the pp rank a send goes to or a receive comes from; -1 for compute
  bool operator==(const PipeAction&) const = default;
};

struct PipelineShape {
  ScheduleKind kind = ScheduleKind::kOneFOneB;
  int ranks = 1;          // pp
  int micro_batches = 1;  // m, per step
  int chunks = 1;         // v, model chunks per rank (> 1 only for interleaved)
  int stages() const { return ranks * chunks; }
  int stage_of(int rank, int chunk) const { return chunk * ranks + rank; }
};

struct PipelineSchedule {
  PipelineShape shape;
  std::vector<std::vector<PipeAction>> actions;  // per pp rank, in order
};

// Errors name what does not fit (interleaved needs v >= 2 and m a multiple of p; the others v = 1).
absl::StatusOr<PipelineSchedule> make_pipeline_schedule(const PipelineShape& shape);

// "F3.1" (forward of micro-batch 3, chunk 1), "B0", "W2", "sA3>1" (send activation to rank 1), ... for messages.
std::string describe(const PipeAction& action);

}  // namespace memtrain::parallel
