// Runs a pipeline schedule on paper: every rank walks its action list with its own clock, computations take the
// given costs, a send delivers at once and a receive waits for its message. It rejects lists that cannot be right
// - a forward before its input arrived, a backward before its forward or its output gradient, a send of something
// not computed yet, a receive nobody sends, a send nobody receives, a micro-batch's chunk run twice or never, a
// wait that never ends (deadlock) - and measures the bubble and the activations in flight on each rank.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "parallel/pipeline_schedule.h"

namespace memtrain::parallel {

// Time of one chunk's forward, input-gradient and weight-gradient parts (kBackward costs the last two together).
struct PipelineCosts {
  double forward = 1, backward_input = 1, backward_weight = 1;
};

struct PipelineTimeline {
  double makespan = 0;         // when the last rank finishes
  double bubble_fraction = 0;  // idle time of all ranks / (ranks * makespan)
  // Per rank, the most (micro-batch, chunk) pairs whose forward ran and whose backward (its weight part under zero
  // bubble) has not: the activations the rank holds at once.
  std::vector<int> peak_in_flight;
  // Per rank, at the start of each backward (its input part): its chunk, and per chunk the micro-batches whose
  // forward ran and whose backward has not (this one included) and, under zero bubble, those whose input part ran
  // and whose weight part has not (they hold only what the deferred weight gradients need). The memory plan
  // weighs them with each chunk's bytes.
  struct Held {
    int chunk = 0;
    std::vector<int> forwarded, awaiting_weight;  // per chunk
  };
  std::vector<std::vector<Held>> held_at_backward;
};

absl::StatusOr<PipelineTimeline> simulate_pipeline(const PipelineSchedule& schedule, const PipelineCosts& costs = {});

}  // namespace memtrain::parallel
