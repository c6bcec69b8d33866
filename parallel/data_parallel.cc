#include "parallel/data_parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/quantize.h"
#include "core/thread_pool.h"

namespace memtrain::parallel {
namespace {
void copy_floats(const float* src, int64_t n, float* dst) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }
}  // namespace

std::vector<std::pair<int, int>> gradient_buckets(const ShardLayout& layout, int64_t bucket_bytes) {
  std::vector<std::pair<int, int>> buckets;
  int hi = layout.num_units() - 1;
  int64_t bytes = 0;
  for (int u = layout.num_units() - 1; u >= 0; --u) {
    bytes += layout.unit_padded(u) * 4;
    if (bytes >= bucket_bytes || u == 0) {
      buckets.emplace_back(u, hi);
      hi = u - 1;
      bytes = 0;
    }
  }
  return buckets;
}

std::array<int64_t, 2> receive_buffer_elements(const ShardLayout& layout, int stage, int64_t bucket_bytes) {
  std::array<int64_t, 2> need{};
  if (layout.ranks() == 1) return need;
  if (stage == 0) {
    const auto buckets = gradient_buckets(layout, bucket_bytes);
    for (size_t b = 0; b < buckets.size(); ++b) {
      const auto [lo, hi] = buckets[b];
      const int64_t n = layout.unit_full_pos(hi) + layout.unit_padded(hi) - layout.unit_full_pos(lo);
      need[b % 2] = std::max(need[b % 2], n);
    }
  } else {
    for (int k = 0; k < layout.num_units(); ++k) {
      const int u = layout.num_units() - 1 - k;  // backward finishes units from the last
      need[k % 2] = std::max(need[k % 2], layout.unit_padded(u));
    }
  }
  return need;
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::create(Communicator& dp,
                                                                   std::vector<std::vector<UnitTensor>> units,
                                                                   const DataParallelOptions& options) {
  if (options.stage < 0 || options.stage > 3)
    return absl::InvalidArgumentError(absl::StrCat("zero.stage must be 0-3, got ", options.stage));
  if (options.grad_accum < 1) return absl::InvalidArgumentError("grad_accum must be >= 1");
  if (options.quantized_weights && options.stage != 3)
    return absl::InvalidArgumentError("quantized weight gathers need zero.stage 3");
  if (options.param_tier != nullptr && (options.stage != 3 || options.hpz != nullptr))
    return absl::InvalidArgumentError("a parameter tier needs zero.stage 3 without hpZ");
  if (options.hpz != nullptr) {
    const int h = options.hpz->size();
    if (options.stage != 3 || h < 2 || dp.size() % h != 0)
      return absl::InvalidArgumentError(absl::StrCat("hpZ needs zero.stage 3 and a group size > 1 dividing dp (",
                                                     dp.size(), "), got stage ", options.stage, ", size ", h));
  }
  std::vector<std::vector<int64_t>> numels;
  for (const auto& unit : units) {
    numels.emplace_back();
    for (const UnitTensor& t : unit) numels.back().push_back(shape_numel(t.shape));
  }
  ShardLayout layout(std::move(numels), dp.size());
  std::unique_ptr<DataParallel> engine(new DataParallel(dp, std::move(layout), std::move(units), options));
  MEMTRAIN_RETURN_IF_ERROR(engine->allocate());
  return engine;
}

DataParallel::DataParallel(Communicator& dp, ShardLayout layout, std::vector<std::vector<UnitTensor>> units,
                           const DataParallelOptions& options)
    : dp_(dp), layout_(std::move(layout)), units_(std::move(units)), options_(options), rank_(dp.rank()),
      ranks_(dp.size()), state_(units_.size()), bucket_of_lo_(units_.size(), -1) {}

DataParallel::~DataParallel() {
  // Wait here, ignoring failures (the run already reports the first one): a handle destroyed unwaited would abort.
  for (Pending& p : pending_) p.handle.wait().IgnoreError();
  for (UnitState& st : state_) st.gather.wait().IgnoreError();
}

absl::Status DataParallel::allocate() {
  const int64_t full = layout_.full_size(), shard = layout_.shard_size();
  const int stage = options_.stage;
  if (stage <= 2) {
    MEMTRAIN_ASSIGN_OR_RETURN(value_full_, Tensor::zeros({full}, DType::kF32, MemCategory::kParameters));
    for (int u = 0; u < layout_.num_units(); ++u)
      point(u, value_full_.flat_view(layout_.unit_full_pos(u), {layout_.unit_padded(u)}), /*grads=*/false);
  } else {
    MEMTRAIN_ASSIGN_OR_RETURN(values_, ValueShard::create(layout_, options_.param_tier));
    if (options_.hpz != nullptr) {
      MEMTRAIN_ASSIGN_OR_RETURN(secondary_, Tensor::zeros({full / options_.hpz->size()}, DType::kF32,
                                                          MemCategory::kParameters));
    }
  }
  if (options_.gradients && stage <= 1) {
    MEMTRAIN_ASSIGN_OR_RETURN(grad_full_, Tensor::zeros({full}, DType::kF32, MemCategory::kGradients));
    for (int u = 0; u < layout_.num_units(); ++u)
      point(u, grad_full_.flat_view(layout_.unit_full_pos(u), {layout_.unit_padded(u)}), /*grads=*/true);
    if (options_.grad_accum > 1) {
      MEMTRAIN_ASSIGN_OR_RETURN(grad_accum_, Tensor::zeros({full}, DType::kF32, MemCategory::kGradients));
    }
  } else if (options_.gradients) {
    MEMTRAIN_ASSIGN_OR_RETURN(grad_shard_, Tensor::zeros({shard}, DType::kF32, MemCategory::kGradients));
  }

  const std::vector<ShardSegment> mine = stage == 0 ? layout_.whole_entries() : layout_.segments_of_rank(rank_);
  for (const ShardSegment& s : mine) {
    float* value = stage == 3 ? values_->unit_values(s.unit) + (s.shard_pos - layout_.unit_shard_pos(s.unit))
                              : value_full_.f32() + s.full_pos;
    float* grad = !options_.gradients ? nullptr
                  : stage <= 1        ? reduced_full().f32() + s.full_pos
                                      : grad_shard_.f32() + s.shard_pos;
    owned_.push_back(LocalSegment{s, value, grad});
  }
  if (stage == 3) {
    stored_ = owned_;
  } else {
    for (const ShardSegment& s : layout_.whole_entries())
      stored_.push_back(LocalSegment{s, value_full_.f32() + s.full_pos, nullptr});
  }

  buckets_ = gradient_buckets(layout_, options_.bucket_bytes);
  for (size_t b = 0; b < buckets_.size(); ++b) bucket_of_lo_[buckets_[b].first] = static_cast<int>(b);
  reduced_.assign(layout_.num_units(), false);
  in_shard_.assign(layout_.num_units(), false);
  const std::array<int64_t, 2> slot_elements = receive_buffer_elements(layout_, stage, options_.bucket_bytes);
  for (int k = 0; k < 2 && options_.gradients; ++k) {
    if (slot_elements[k] > 0) {
      MEMTRAIN_ASSIGN_OR_RETURN(slots_[k], Tensor::empty({slot_elements[k]}, DType::kF32, MemCategory::kCommunication));
    }
  }
  return absl::OkStatus();
}

void DataParallel::point(int unit, const Tensor& unit_buffer, bool grads) {
  if (units_[unit].empty()) return;  // a unit without trainable tensors (a fine-tune's embeddings)
  const int64_t base = layout_.unit_full_pos(unit);
  int e = 0;
  while (layout_.entry_unit(e) != unit) ++e;
  for (const UnitTensor& t : units_[unit]) {
    *(grads ? t.grad : t.value) = unit_buffer.flat_view(layout_.entry_full_pos(e) - base, t.shape);
    ++e;
  }
}

void DataParallel::unpoint(int unit, bool values, bool grads) {
  for (const UnitTensor& t : units_[unit]) {
    if (values) *t.value = Tensor();
    if (grads) *t.grad = Tensor();
  }
}

absl::Status DataParallel::begin_micro_batch(int64_t micro) {
  MEMTRAIN_CHECK(micro >= 0 && micro < options_.grad_accum);
  // Stage 2-3 reductions of the previous micro-batch read buffers this one is about to write.
  MEMTRAIN_RETURN_IF_ERROR(drain());
  micro_ = micro;
  launches_ = 0;
  release_idle();
  if (micro == 0) {
    MEMTRAIN_RETURN_IF_ERROR(send_values_out());
    if (grad_full_.defined()) grad_full_.fill_zero();
    std::fill(in_shard_.begin(), in_shard_.end(), false);
  }
  return absl::OkStatus();
}

absl::Status DataParallel::acquire(int unit, UnitUse use) {
  UnitState& st = state_[unit];
  if (options_.stage == 3 && use != UnitUse::kGrads) {
    if (!st.present) MEMTRAIN_RETURN_IF_ERROR(start_gather(unit));
    if (st.gathering) MEMTRAIN_RETURN_IF_ERROR(finish_gather(unit));
    ++st.refs;
    // Prefetch the unit used next: forward walks up, backward (the only use with gradients and values besides
    // the head) walks down; unit 0's backward reads no values, so it is never prefetched going down.
    const int step = use == UnitUse::kValues ? 1 : -1, next = unit + step, after = next + step;
    const auto ahead = [&](int u) { return use != UnitUse::kRecompute && u >= 1 && u < layout_.num_units(); };
    if (ahead(next) && !state_[next].present) MEMTRAIN_RETURN_IF_ERROR(start_gather(next));
    // An offloaded slice is read one unit before its gather, so the read overlaps this unit's compute.
    if (values_out_ && ahead(after) && !state_[after].present) MEMTRAIN_RETURN_IF_ERROR(values_->start_in(after));
  }
  if (options_.stage >= 2 && uses_grads(use) &&
      std::find(launched_units_.begin(), launched_units_.end(), unit) != launched_units_.end()) {
    // Written again while its last gradient is reducing (or reduced but kept): that buffer goes first.
    MEMTRAIN_RETURN_IF_ERROR(free_reduced_grads(/*keep_latest=*/false));
  }
  if (options_.stage >= 2 && uses_grads(use) && !st.grad_full.defined()) {
    MEMTRAIN_RETURN_IF_ERROR(free_reduced_grads(/*keep_latest=*/true));
    MEMTRAIN_ASSIGN_OR_RETURN(st.grad_full,
                              Tensor::zeros({layout_.unit_padded(unit)}, DType::kF32, MemCategory::kGradients));
    point(unit, st.grad_full, /*grads=*/true);
  }
  return poll();
}

absl::Status DataParallel::release(int unit, UnitUse use) {
  UnitState& st = state_[unit];
  if (options_.stage == 3 && use != UnitUse::kGrads) {
    MEMTRAIN_CHECK_MSG(st.refs > 0, absl::StrCat("unit ", unit, " released more often than acquired"));
    if (--st.refs == 0) drop_unit(unit);
  }
  return poll();
}

absl::Status DataParallel::grads_ready(int unit) {
  const bool last_micro = micro_ + 1 == options_.grad_accum;
  if (options_.stage <= 1) {
    if (grad_accum_.defined()) {
      // Micro-batch gradients are added one after the other, exactly as reductions add ranks' gradients.
      const int64_t pos = layout_.unit_full_pos(unit), n = layout_.unit_padded(unit);
      float* acc = grad_accum_.f32() + pos;
      float* g = grad_full_.f32() + pos;
      if (micro_ == 0) {
        copy_floats(g, n, acc);
      } else {
        cpu::add_inplace(acc, g, n, ThreadPool::global());
      }
      std::memset(g, 0, static_cast<size_t>(n) * 4);
    }
    if (!last_micro) return absl::OkStatus();  // no communication on accumulation micro-batches
    if (options_.stage == 0) {
      // A layer after a bucket's reduce-scatter was posted, its all-gather follows (this call is at the same
      // point on every rank; the wait is short, since a layer's backward ran in between).
      MEMTRAIN_RETURN_IF_ERROR(post_followups());
      if (bucket_of_lo_[unit] >= 0) MEMTRAIN_RETURN_IF_ERROR(start_bucket(bucket_of_lo_[unit]));
    } else {
      MEMTRAIN_RETURN_IF_ERROR(start_unit_reduce_scatter(unit));
    }
    return poll();
  }
  MEMTRAIN_RETURN_IF_ERROR(start_unit_reduce_scatter(unit));
  return poll();
}

void DataParallel::ordered_sum(const float* chunks, int64_t n, float* out, bool accumulate) const {
  ThreadPool& pool = ThreadPool::global();
  if (!accumulate) {
    copy_floats(chunks, n, out);
    for (int k = 1; k < ranks_; ++k) cpu::add_inplace(out, chunks + k * n, n, pool);
    return;
  }
  float* first = const_cast<float*>(chunks);  // the receive buffer is ours until it goes back to the free list
  for (int k = 1; k < ranks_; ++k) cpu::add_inplace(first, chunks + k * n, n, pool);
  cpu::add_inplace(out, first, n, pool);
}

absl::Status DataParallel::start_bucket(int bucket) {
  if (ranks_ == 1) return absl::OkStatus();  // the sum over one rank is its gradient
  const auto [lo, hi] = buckets_[bucket];
  const int64_t a = layout_.unit_full_pos(lo), n = layout_.unit_full_pos(hi) + layout_.unit_padded(hi) - a;
  float* data = reduced_full().f32() + a;
  std::vector<int64_t> counts(ranks_);
  int64_t offset = 0;
  for (int k = 0; k < ranks_; ++k) {
    counts[k] = ring_chunk(n, ranks_, k);
    if (k < rank_) offset += counts[k];
  }
  const int64_t mine = counts[rank_];
  MEMTRAIN_ASSIGN_OR_RETURN(const int slot, take_slot(bucket % 2));
  float* buf = slots_[slot].f32();
  const std::vector<int64_t> recv_counts(ranks_, mine);
  push(dp_.all_to_all_v_async(data, counts, buf, recv_counts, DType::kF32),
       [this, slot, buf, data, counts, offset, mine]() -> absl::Status {
         ordered_sum(buf, mine, data + offset, /*accumulate=*/false);
         slot_busy_[slot] = false;
         slot_followup_[slot] = [this, data, counts, offset] {
           push(dp_.all_gather_v_async(data + offset, data, counts, DType::kF32), nullptr);
         };
         return absl::OkStatus();
       });
  return absl::OkStatus();
}

absl::Status DataParallel::start_unit_reduce_scatter(int unit) {
  const int64_t S = layout_.unit_slice(unit);
  const float* src = options_.stage == 1 ? reduced_full().f32() + layout_.unit_full_pos(unit)
                                         : state_[unit].grad_full.f32();
  MEMTRAIN_CHECK_MSG(src != nullptr, absl::StrCat("unit ", unit, ": gradients ready but never written"));
  float* out = reduced_slice(unit);
  const bool accumulate = options_.stage >= 2 && in_shard_[unit];
  if (options_.stage >= 2) {
    launched_units_.push_back(unit);
    in_shard_[unit] = true;
  }
  if (ranks_ == 1) {  // no communication: add the gradient as the one rank's slice
    if (src != out) ordered_sum(src, S, out, accumulate);
    reduced_[unit] = true;
    return absl::OkStatus();
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const int slot, take_slot((layout_.num_units() - 1 - unit) % 2));
  float* buf = slots_[slot].f32();
  const std::vector<int64_t> counts(ranks_, S);
  push(dp_.all_to_all_v_async(src, counts, buf, counts, DType::kF32),
       [this, slot, buf, out, S, accumulate, unit]() -> absl::Status {
         ordered_sum(buf, S, out, accumulate);
         slot_busy_[slot] = false;
         reduced_[unit] = true;
         return absl::OkStatus();
       });
  return absl::OkStatus();
}

void DataParallel::push(CommHandle handle, std::function<absl::Status()> on_done) {
  pending_.push_back(Pending{std::move(handle), std::move(on_done)});
}

absl::Status DataParallel::complete_front() {
  Pending p = std::move(pending_.front());
  pending_.pop_front();
  MEMTRAIN_RETURN_IF_ERROR(p.handle.wait());
  return p.on_done ? p.on_done() : absl::OkStatus();
}

absl::Status DataParallel::poll() {
  while (!pending_.empty() && pending_.front().handle.test()) MEMTRAIN_RETURN_IF_ERROR(complete_front());
  return absl::OkStatus();
}

absl::Status DataParallel::post_followups() {
  const int first = slot_launch_[0] <= slot_launch_[1] ? 0 : 1;  // in launch order
  for (int slot : {first, 1 - first}) {
    while (slot_busy_[slot]) MEMTRAIN_RETURN_IF_ERROR(complete_front());
    if (slot_followup_[slot]) std::exchange(slot_followup_[slot], nullptr)();
  }
  return absl::OkStatus();
}

absl::Status DataParallel::drain() {
  MEMTRAIN_RETURN_IF_ERROR(post_followups());
  while (!pending_.empty()) MEMTRAIN_RETURN_IF_ERROR(complete_front());
  return free_reduced_grads(/*keep_latest=*/false);
}

absl::StatusOr<int> DataParallel::take_slot(int slot) {
  while (slot_busy_[slot]) {
    MEMTRAIN_CHECK(!pending_.empty());
    MEMTRAIN_RETURN_IF_ERROR(complete_front());
  }
  if (slot_followup_[slot]) std::exchange(slot_followup_[slot], nullptr)();
  slot_busy_[slot] = true;
  slot_launch_[slot] = launches_++;
  return slot;
}

absl::Status DataParallel::free_reduced_grads(bool keep_latest) {
  while (launched_units_.size() > (keep_latest ? 1u : 0u)) {
    const int u = launched_units_.front();
    while (!reduced_[u]) MEMTRAIN_RETURN_IF_ERROR(complete_front());
    launched_units_.pop_front();
    reduced_[u] = false;
    state_[u].grad_full = Tensor();
    unpoint(u, /*values=*/false, /*grads=*/true);
  }
  return absl::OkStatus();
}

absl::Status DataParallel::finish_gradients() { return drain(); }

absl::StatusOr<double> DataParallel::grad_norm() {
  ThreadPool& pool = ThreadPool::global();
  double total = 0;
  if (options_.stage == 0) {
    std::vector<double> blocks(layout_.full_size() / kShardAlign);
    cpu::block_sum_squares(reduced_full().f32(), layout_.full_size(), kShardAlign, blocks.data(), pool);
    for (double b : blocks) total += b;
    return std::sqrt(total);
  }
  // Local blocks in shard order, then everyone's, summed unit by unit, rank by rank: the global order.
  const int64_t nblocks = layout_.shard_size() / kShardAlign;
  std::vector<double> local(nblocks);
  for (int u = 0; u < layout_.num_units(); ++u) {
    double* out = local.data() + layout_.unit_shard_pos(u) / kShardAlign;
    cpu::block_sum_squares(reduced_slice(u), layout_.unit_slice(u), kShardAlign, out, pool);
  }
  std::vector<double> all(nblocks * ranks_);
  const std::vector<int64_t> counts(ranks_, nblocks * 8);
  MEMTRAIN_RETURN_IF_ERROR(dp_.all_gather_v(local.data(), all.data(), counts, DType::kU8));
  for (int u = 0; u < layout_.num_units(); ++u) {
    const int64_t first = layout_.unit_shard_pos(u) / kShardAlign, count = layout_.unit_slice(u) / kShardAlign;
    for (int k = 0; k < ranks_; ++k)
      for (int64_t b = 0; b < count; ++b) total += all[k * nblocks + first + b];
  }
  return std::sqrt(total);
}

float* DataParallel::reduced_slice(int unit) const {
  MEMTRAIN_CHECK(options_.stage >= 1);
  if (options_.stage == 1) return reduced_full().f32() + layout_.unit_full_pos(unit) + rank_ * layout_.unit_slice(unit);
  return grad_shard_.f32() + layout_.unit_shard_pos(unit);
}

void DataParallel::scale_grads(float coef) {
  ThreadPool& pool = ThreadPool::global();
  if (options_.stage == 0) {
    cpu::scale_inplace(reduced_full().f32(), coef, layout_.full_size(), pool);
  } else if (options_.stage == 1) {
    for (int u = 0; u < layout_.num_units(); ++u)
      cpu::scale_inplace(reduced_slice(u), coef, layout_.unit_slice(u), pool);
  } else {
    cpu::scale_inplace(grad_shard_.f32(), coef, layout_.shard_size(), pool);
  }
}

absl::Status DataParallel::finish_step() {
  if (options_.stage == 1 || options_.stage == 2) {
    for (int u = 0; u < layout_.num_units(); ++u) {
      const int64_t S = layout_.unit_slice(u);
      float* unit = value_full_.f32() + layout_.unit_full_pos(u);
      push(dp_.all_gather_async(unit + rank_ * S, unit, S, DType::kF32), nullptr);
    }
    MEMTRAIN_RETURN_IF_ERROR(drain());
  }
  for (UnitState& st : state_) st.secondary_valid = false;
  return absl::OkStatus();
}

absl::StatusOr<double> DataParallel::sum_over_ranks(double local) {
  std::vector<double> all(ranks_);
  MEMTRAIN_RETURN_IF_ERROR(dp_.all_gather(&local, all.data(), 8, DType::kU8));
  double total = 0;
  for (double v : all) total += v;
  return total;
}

absl::Status DataParallel::materialize_values() {
  if (options_.stage != 3) return absl::OkStatus();
  for (int u = 0; u < layout_.num_units(); ++u) {
    if (!state_[u].present) MEMTRAIN_RETURN_IF_ERROR(start_gather(u));
    if (state_[u].gathering) MEMTRAIN_RETURN_IF_ERROR(finish_gather(u));
  }
  return absl::OkStatus();
}

void DataParallel::release_idle() {
  for (int u = 0; u < static_cast<int>(state_.size()); ++u) {
    UnitState& st = state_[u];
    if (!st.present || st.refs > 0) continue;
    if (st.gathering) {
      st.gather.wait().IgnoreError();  // a failed gather is reported by the next collective on dp
      st.gathering = false;
      gathered(u).IgnoreError();       // a failed write is reported when the unit goes out again
    }
    drop_unit(u);
  }
}

absl::Status DataParallel::bring_values_in(int unit) {
  if (offloaded_values() == nullptr) return absl::OkStatus();
  if (unit < 0) {
    values_out_ = false;
    return values_->all_in(/*will_write=*/true);
  }
  MEMTRAIN_RETURN_IF_ERROR(values_->finish_in(unit));
  values_->mark_written(unit);
  return absl::OkStatus();
}

absl::Status DataParallel::send_values_out(int unit) {
  if (offloaded_values() == nullptr) return absl::OkStatus();
  if (unit >= 0) return values_->finish_out(unit);
  values_out_ = true;
  return values_->all_out();
}

absl::Status DataParallel::gathered(int unit) {
  return values_out_ ? values_->start_out(unit) : absl::OkStatus();
}

absl::Status DataParallel::start_gather(int unit) {
  UnitState& st = state_[unit];
  if (!st.secondary_valid && values_ != nullptr) MEMTRAIN_RETURN_IF_ERROR(values_->finish_in(unit));
  MEMTRAIN_ASSIGN_OR_RETURN(st.gathered,
                            Tensor::empty({layout_.unit_padded(unit)}, DType::kF32, MemCategory::kParameters));
  st.present = true;
  st.gathering = true;
  if (st.secondary_valid) {
    const int64_t part = layout_.unit_padded(unit) / options_.hpz->size();
    st.gather = options_.hpz->all_gather_async(secondary_.f32() + layout_.unit_full_pos(unit) / options_.hpz->size(),
                                               st.gathered.f32(), part, DType::kF32);
  } else if (options_.quantized_weights) {
    const int64_t S = layout_.unit_slice(unit), bytes = qwz_packed_bytes(S);
    MEMTRAIN_ASSIGN_OR_RETURN(st.packed_send, Tensor::empty({bytes}, DType::kU8, MemCategory::kCommunication));
    MEMTRAIN_ASSIGN_OR_RETURN(st.packed_recv,
                              Tensor::empty({bytes * ranks_}, DType::kU8, MemCategory::kCommunication));
    auto* send = st.packed_send.data<uint8_t>();
    cpu::quantize_int8_blocks(values_->unit_values(unit), S, kShardAlign,
                              reinterpret_cast<int8_t*>(send), reinterpret_cast<float*>(send + S),
                              ThreadPool::global());
    st.gather = dp_.all_gather_async(send, st.packed_recv.raw(), bytes, DType::kU8);
  } else {
    st.gather = dp_.all_gather_async(values_->unit_values(unit), st.gathered.f32(),
                                     layout_.unit_slice(unit), DType::kF32);
  }
  return absl::OkStatus();
}

absl::Status DataParallel::finish_gather(int unit) {
  UnitState& st = state_[unit];
  st.gathering = false;
  MEMTRAIN_RETURN_IF_ERROR(st.gather.wait());
  MEMTRAIN_RETURN_IF_ERROR(gathered(unit));
  if (st.packed_recv.defined()) {
    // Every slice, this rank's too, as the others see it: all ranks compute with the same values.
    const int64_t S = layout_.unit_slice(unit), bytes = qwz_packed_bytes(S);
    const auto* all = st.packed_recv.data<uint8_t>();
    for (int k = 0; k < ranks_; ++k) {
      const uint8_t* part = all + k * bytes;
      cpu::dequantize_int8_blocks(reinterpret_cast<const int8_t*>(part), reinterpret_cast<const float*>(part + S), S,
                                  kShardAlign, st.gathered.f32() + k * S, ThreadPool::global());
    }
    st.packed_send = Tensor();
    st.packed_recv = Tensor();
  }
  point(unit, st.gathered, /*grads=*/false);
  if (options_.hpz != nullptr && !st.secondary_valid) {
    const int h = options_.hpz->size();
    const int64_t part = layout_.unit_padded(unit) / h;
    copy_floats(st.gathered.f32() + options_.hpz->rank() * part, part,
                secondary_.f32() + layout_.unit_full_pos(unit) / h);
    st.secondary_valid = true;
  }
  return absl::OkStatus();
}

void DataParallel::drop_unit(int unit) {
  UnitState& st = state_[unit];
  MEMTRAIN_CHECK(!st.gathering);
  st.gathered = Tensor();
  st.present = false;
  unpoint(unit, /*values=*/true, /*grads=*/false);
}

}  // namespace memtrain::parallel
