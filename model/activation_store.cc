#include "model/activation_store.h"

#include "absl/strings/str_cat.h"
#include "core/cpu/quantize.h"
#include "core/thread_pool.h"

namespace memtrain::model {

ActivationStore::~ActivationStore() { clear(); }

void ActivationStore::clear() {
  for (auto& [key, s] : saved_) {
    if (s.where == Where::kMemory || s.where == Where::kCompressed) continue;
    s.tier->wait(s.ticket).IgnoreError();  // a failed transfer was reported to whoever waited on it
    s.tier->release(s.ticket);
  }
  saved_.clear();
  writing_block_ = -1;
}

int64_t ActivationStore::compress_block(int64_t n) {
  int64_t b = 64;
  while (n % b != 0) b /= 2;
  return b;
}

absl::Status ActivationStore::save(const std::string& key, const Tensor& t, Kind kind) {
  if (!keep_ || discarding_) return absl::OkStatus();
  MEMTRAIN_CHECK(t.defined());
  Saved s{t, block_, block_mode_.tier};
  s.shape = t.shape();
  s.dtype = t.dtype();
  if (block_mode_.compress && kind == Kind::kLinearInput && t.dtype() == DType::kF32 && t.numel() > 0) {
    const int64_t n = t.numel(), b = compress_block(n);
    MEMTRAIN_ASSIGN_OR_RETURN(s.tensor, Tensor::empty({n}, DType::kI8, MemCategory::kActivations));
    MEMTRAIN_ASSIGN_OR_RETURN(s.scales, Tensor::empty({n / b}, DType::kF32, MemCategory::kActivations));
    cpu::quantize_int8_blocks(t.f32(), n, b, s.tensor.data<int8_t>(), s.scales.f32(), ThreadPool::global());
    s.where = Where::kCompressed;
  }
  const bool inserted = saved_.emplace(key + suffix_, std::move(s)).second;
  MEMTRAIN_CHECK_MSG(inserted, "activation saved twice: " + key);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> ActivationStore::take(const std::string& key) {
  auto it = saved_.find(key + suffix_);
  if (it == saved_.end())
    return absl::NotFoundError(absl::StrCat("activation store: no tensor saved as '", key + suffix_, "'"));
  Saved& s = it->second;
  if (s.where == Where::kCompressed) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, Tensor::empty(s.shape, DType::kF32, MemCategory::kActivations));
    const int64_t n = x.numel();
    cpu::dequantize_int8_blocks(s.tensor.data<int8_t>(), s.scales.f32(), n, compress_block(n), x.f32(),
                                ThreadPool::global());
    saved_.erase(it);
    return x;
  }
  if (s.where == Where::kWriting) MEMTRAIN_RETURN_IF_ERROR(finish(s));
  if (s.where == Where::kOut) MEMTRAIN_RETURN_IF_ERROR(start_reads(s.layer));  // not fetched ahead
  MEMTRAIN_RETURN_IF_ERROR(finish(s));
  Tensor t = std::move(s.tensor);
  saved_.erase(it);
  return t;
}

void ActivationStore::begin_block(int64_t layer, BlockMode mode) {
  block_ = layer;
  block_mode_ = mode;
  if (!keep_) block_mode_.tier = nullptr;
}

absl::Status ActivationStore::end_block() {
  const int64_t layer = block_;
  SwapTier* tier = block_mode_.tier;
  block_ = -1;
  block_mode_ = {};
  if (tier != nullptr) {
    for (auto& [key, s] : saved_) {
      if (s.layer != layer || s.where != Where::kMemory || s.tier == nullptr) continue;
      MEMTRAIN_ASSIGN_OR_RETURN(s.ticket, tier->write(s.tensor));
      s.where = Where::kWriting;
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(finish_forward());  // the block before, whatever this one's policy: written by now
  if (tier != nullptr) writing_block_ = layer;
  return absl::OkStatus();
}

void ActivationStore::begin_chunk(int64_t unit, SwapTier* tier, std::string key_suffix) {
  MEMTRAIN_CHECK(keep_ && suffix_.empty());
  outer_ = {block_, block_mode_, discarding_};
  discarding_ = false;
  suffix_ = std::move(key_suffix);
  begin_block(unit, {tier});
}

absl::Status ActivationStore::end_chunk() {
  MEMTRAIN_RETURN_IF_ERROR(end_block());
  suffix_.clear();
  block_ = outer_.block;
  block_mode_ = outer_.mode;
  discarding_ = outer_.discarding;
  return absl::OkStatus();
}

absl::Status ActivationStore::finish_forward() {
  if (writing_block_ < 0) return absl::OkStatus();
  for (auto& [key, s] : saved_)
    if (s.layer == writing_block_ && s.where == Where::kWriting) MEMTRAIN_RETURN_IF_ERROR(finish(s));
  writing_block_ = -1;
  return absl::OkStatus();
}

absl::Status ActivationStore::fetch_block(int64_t layer, int64_t next) {
  MEMTRAIN_RETURN_IF_ERROR(finish_forward());
  MEMTRAIN_RETURN_IF_ERROR(start_reads(layer));
  for (auto& [key, s] : saved_)
    if (s.layer == layer) MEMTRAIN_RETURN_IF_ERROR(finish(s));
  return next >= 0 ? start_reads(next) : absl::OkStatus();
}

absl::Status ActivationStore::start_reads(int64_t layer) {
  for (auto& [key, s] : saved_) {
    if (s.layer != layer || s.where != Where::kOut) continue;
    MEMTRAIN_ASSIGN_OR_RETURN(s.tensor, Tensor::empty(s.shape, s.dtype, MemCategory::kActivations));
    MEMTRAIN_RETURN_IF_ERROR(s.tier->read(s.ticket, s.tensor));
    s.where = Where::kReading;
  }
  return absl::OkStatus();
}

absl::Status ActivationStore::finish(Saved& s) {
  if (s.where != Where::kWriting && s.where != Where::kReading) return absl::OkStatus();  // nothing in flight
  MEMTRAIN_RETURN_IF_ERROR(s.tier->wait(s.ticket));
  if (s.where == Where::kWriting) {
    s.tensor = Tensor();  // safely out: its memory goes back
    s.where = Where::kOut;
  } else {
    s.tier->release(s.ticket);
    s.where = Where::kMemory;
  }
  return absl::OkStatus();
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
  for (const auto& [k, s] : saved_) out.push_back(k);
  return out;
}

}  // namespace memtrain::model
