#include "core/memory.h"

#include <sys/mman.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"

namespace memtrain {

absl::string_view mem_category_name(MemCategory c) {
  switch (c) {
    case MemCategory::kParameters: return "parameters";
    case MemCategory::kGradients: return "gradients";
    case MemCategory::kOptimizerState: return "optimizer_state";
    case MemCategory::kActivations: return "activations";
    case MemCategory::kCommunication: return "communication";
    case MemCategory::kWorkspace: return "workspace";
    case MemCategory::kSwap: return "swap";
  }
  MEMTRAIN_CHECK(false);
}

std::string format_bytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= (int64_t{1} << 30)) return absl::StrFormat("%.2f GiB", b / (1 << 30));
  if (bytes >= (int64_t{1} << 20)) return absl::StrFormat("%.2f MiB", b / (1 << 20));
  if (bytes >= (int64_t{1} << 10)) return absl::StrFormat("%.2f KiB", b / (1 << 10));
  return absl::StrCat(bytes, " B");
}

MemoryTracker& MemoryTracker::host() {
  static MemoryTracker* tracker = new MemoryTracker();  // never destroyed: tensors may outlive static teardown
  return *tracker;
}

size_t MemoryTracker::rounded(size_t bytes) {
  if (bytes == 0) return 64;
  if (bytes <= 4096) return (bytes + 63) & ~size_t{63};
  return (bytes + 4095) & ~size_t{4095};
}

absl::Status MemoryTracker::admit(int64_t bytes, MemCategory category, absl::string_view what) const {
  if (budget_ > 0 && stats_.total_current + bytes > budget_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory.budget: allocating ", format_bytes(bytes), " of ", mem_category_name(category), " for ", what,
        " would exceed the budget of ", format_bytes(budget_), " (", format_bytes(stats_.total_current),
        " in use)\n", format_breakdown(stats_)));
  }
  return absl::OkStatus();
}

void MemoryTracker::count(int64_t bytes, MemCategory category) {
  const int c = static_cast<int>(category);
  stats_.current[c] += bytes;
  stats_.total_current += bytes;
  MEMTRAIN_CHECK(stats_.current[c] >= 0);
  if (stats_.current[c] > stats_.peak[c]) stats_.peak[c] = stats_.current[c];
  if (stats_.total_current > stats_.total_peak) stats_.total_peak = stats_.total_current;
}

absl::StatusOr<void*> MemoryTracker::allocate(size_t bytes, MemCategory category, absl::string_view what) {
  const size_t size = rounded(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  MEMTRAIN_RETURN_IF_ERROR(admit(static_cast<int64_t>(bytes), category, what));
  void* ptr = nullptr;
  auto it = cache_.find(size);
  if (it != cache_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
  } else {
    // posix_memalign, not aligned_alloc: C requires aligned_alloc's size to be a multiple of the alignment.
    if (posix_memalign(&ptr, size >= (size_t{2} << 20) ? size_t{2} << 20 : 64, size) != 0) ptr = nullptr;
    if (ptr == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("out of host memory allocating ", format_bytes(bytes), " for ", what));
    }
    if (size >= (size_t{2} << 20)) madvise(ptr, size, MADV_HUGEPAGE);  // best effort; see header
    stats_.reserved += static_cast<int64_t>(size);
  }
  count(static_cast<int64_t>(bytes), category);
  return ptr;
}

void MemoryTracker::release(void* ptr, size_t bytes, MemCategory category) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  count(-static_cast<int64_t>(bytes), category);
  cache_[rounded(bytes)].push_back(ptr);
}

absl::Status MemoryTracker::charge(int64_t bytes, MemCategory category, absl::string_view what) {
  std::lock_guard<std::mutex> lock(mu_);
  MEMTRAIN_RETURN_IF_ERROR(admit(bytes, category, what));
  count(bytes, category);
  stats_.reserved += bytes;
  return absl::OkStatus();
}

void MemoryTracker::discharge(int64_t bytes, MemCategory category) {
  std::lock_guard<std::mutex> lock(mu_);
  count(-bytes, category);
  stats_.reserved -= bytes;
}

void MemoryTracker::set_budget(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  budget_ = bytes;
}

int64_t MemoryTracker::budget() const {
  std::lock_guard<std::mutex> lock(mu_);
  return budget_;
}

MemorySnapshot MemoryTracker::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

int64_t MemoryTracker::current(MemCategory c) const { return snapshot().current[static_cast<int>(c)]; }
int64_t MemoryTracker::peak(MemCategory c) const { return snapshot().peak[static_cast<int>(c)]; }

void MemoryTracker::reset_peaks() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak = stats_.current;
  stats_.total_peak = stats_.total_current;
}

void MemoryTracker::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [size, blocks] : cache_) {
    for (void* p : blocks) std::free(p);
    stats_.reserved -= static_cast<int64_t>(size * blocks.size());
  }
  cache_.clear();
}

std::string MemoryTracker::breakdown() const { return format_breakdown(snapshot()); }

std::string format_breakdown(const MemorySnapshot& s) {
  std::string out;
  for (int c = 0; c < kNumMemCategories; ++c) {
    absl::StrAppend(&out, "  ", mem_category_name(static_cast<MemCategory>(c)), ": ", format_bytes(s.current[c]),
                    " (peak ", format_bytes(s.peak[c]), ")\n");
  }
  absl::StrAppend(&out, "  total: ", format_bytes(s.total_current), " (peak ", format_bytes(s.total_peak), ")");
  return out;
}

}  // namespace memtrain
