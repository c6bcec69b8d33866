#include "model/activation_store.h"

#include "absl/strings/str_cat.h"

namespace memtrain::model {

absl::Status ActivationStore::save(const std::string& key, const Tensor& t) {
  if (!keep_ || discarding_) return absl::OkStatus();
  MEMTRAIN_CHECK(t.defined());
  const bool inserted = saved_.emplace(key, t).second;
  MEMTRAIN_CHECK_MSG(inserted, "activation saved twice: " + key);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> ActivationStore::take(const std::string& key) {
  auto it = saved_.find(key);
  if (it == saved_.end()) return absl::NotFoundError(absl::StrCat("activation store: no tensor saved as '", key, "'"));
  Tensor t = std::move(it->second);
  saved_.erase(it);
  return t;
}

absl::Status ActivationStore::weight_grad(std::function<absl::Status()> fn) {
  if (!defer_) return fn();
  weight_grads_.push_back(std::move(fn));
  return absl::OkStatus();
}

absl::Status ActivationStore::run_weight_grads() {
  for (auto& fn : weight_grads_) MEMTRAIN_RETURN_IF_ERROR(fn());
  weight_grads_.clear();
  return absl::OkStatus();
}

std::vector<std::string> ActivationStore::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : saved_) out.push_back(k);
  return out;
}

}  // namespace memtrain::model
