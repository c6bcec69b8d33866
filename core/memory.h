// Host memory accounting: every byte a tensor holds is tagged with a category, with current and peak bytes per
// category and an optional budget. Freed blocks are cached by size and reused, because first-touching fresh pages
// here runs at ~0.4 GB/s (DESIGN.md) and a training step allocates the same sizes every time.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include "absl/strings/string_view.h"
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain {

enum class MemCategory : uint8_t {
  kParameters,
  kGradients,
  kOptimizerState,
  kActivations,
  kCommunication,
  kWorkspace,
  kSwap,
};
inline constexpr int kNumMemCategories = 7;

// The names used by metrics.jsonl's `mem` and by `memtrain plan --json`.
absl::string_view mem_category_name(MemCategory c);

struct MemorySnapshot {
  std::array<int64_t, kNumMemCategories> current{};
  std::array<int64_t, kNumMemCategories> peak{};
  int64_t total_current = 0;
  int64_t total_peak = 0;
  int64_t reserved = 0;  // live plus cached bytes actually held from the OS
};

class MemoryTracker {
 public:
  // The process-wide host pool (DESIGN.md allows process-wide pools).
  static MemoryTracker& host();

  // Returns 64-byte aligned memory of at least `bytes`, or ResourceExhausted naming `what` and printing the
  // breakdown when the live total would pass the budget.
  absl::StatusOr<void*> allocate(size_t bytes, MemCategory category, absl::string_view what);
  void release(void* ptr, size_t bytes, MemCategory category);
  // Counts `bytes` of memory held some other way (core/paged_buffer.h's pages) as allocate would, budget included,
  // and gives them back.
  absl::Status charge(int64_t bytes, MemCategory category, absl::string_view what);
  void discharge(int64_t bytes, MemCategory category);

  // 0 means no budget. Applies to live bytes over all categories.
  void set_budget(int64_t bytes);
  int64_t budget() const;

  MemorySnapshot snapshot() const;
  int64_t current(MemCategory c) const;
  int64_t peak(MemCategory c) const;
  void reset_peaks();     // peaks := current
  void release_cached();  // hands cached blocks back to the OS
  std::string breakdown() const;  // "parameters 1.2 MiB (peak 1.2 MiB), ..." one category per line

 private:
  static size_t rounded(size_t bytes);
  absl::Status admit(int64_t bytes, MemCategory category, absl::string_view what) const;  // the budget, under mu_
  void count(int64_t bytes, MemCategory category);  // under mu_
  mutable std::mutex mu_;
  MemorySnapshot stats_;
  int64_t budget_ = 0;
  std::unordered_map<size_t, std::vector<void*>> cache_;  // rounded size -> free blocks
};

std::string format_bytes(int64_t bytes);  // "1.50 MiB"
std::string format_breakdown(const MemorySnapshot& s);  // one "  category: current (peak p)" line per category

}  // namespace memtrain
