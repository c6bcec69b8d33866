#include "optim/restartable.h"

#include "core/status.h"

namespace memtrain::optim {

absl::StatusOr<std::unique_ptr<Restartable>> Restartable::create(Factory factory, int64_t period) {
  MEMTRAIN_CHECK(period > 0);
  std::unique_ptr<Restartable> opt(new Restartable(std::move(factory), period));
  MEMTRAIN_ASSIGN_OR_RETURN(opt->inner_, opt->factory_());
  return opt;
}

absl::Status Restartable::restart() {
  MEMTRAIN_CHECK_MSG(step_ % period_ == 0, "a restart ends a period");
  inner_.reset();  // before the new one allocates: the peak holds one state
  MEMTRAIN_ASSIGN_OR_RETURN(inner_, factory_());
  return absl::OkStatus();
}

absl::Status Restartable::step(double lr) {
  MEMTRAIN_RETURN_IF_ERROR(inner_->step(lr));
  ++step_;
  return absl::OkStatus();
}

absl::Status Restartable::restore(const CheckpointStates& states, int64_t steps_taken) {
  MEMTRAIN_RETURN_IF_ERROR(inner_->restore(states, steps_taken % period_));
  step_ = steps_taken;
  return absl::OkStatus();
}

}  // namespace memtrain::optim
