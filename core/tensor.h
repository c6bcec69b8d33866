// Tensor: a shape, a dtype and a reference to contiguous storage whose bytes are tagged with a memory category.
// Copies share storage (like torch.Tensor); `clone` copies bytes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "core/memory.h"
#include "core/status.h"

namespace memtrain {

enum class Device : uint8_t { kCpu, kCuda };

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_string(const Shape& s);  // "(2, 3, 16)"

// Owns one allocation from MemoryTracker::host() and returns it on destruction; or borrows bytes that `owner`
// keeps alive (and accounts for).
class Storage {
 public:
  Storage(void* data, size_t bytes, MemCategory category) : data_(data), bytes_(bytes), category_(category) {}
  Storage(void* data, size_t bytes, MemCategory category, std::shared_ptr<const void> owner)
      : data_(data), bytes_(bytes), category_(category), owner_(std::move(owner)) {}
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  MemCategory category() const { return category_; }

 private:
  void* data_;
  size_t bytes_;
  MemCategory category_;
  std::shared_ptr<const void> owner_;  // set: borrowed
};

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false

  static absl::StatusOr<Tensor> empty(Shape shape, DType dtype, MemCategory category);
  static absl::StatusOr<Tensor> zeros(Shape shape, DType dtype, MemCategory category);
  static absl::StatusOr<Tensor> empty_like(const Tensor& t, MemCategory category);
  static absl::StatusOr<Tensor> zeros_like(const Tensor& t, MemCategory category);
  // A tensor over bytes that `owner` holds and keeps alive (core/paged_buffer.h); nothing is allocated or counted.
  static Tensor borrowed(void* data, Shape shape, DType dtype, MemCategory category, std::shared_ptr<const void> owner);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const;  // negative i counts from the end
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return Device::kCpu; }
  MemCategory category() const { return storage_->category(); }
  int64_t cols() const { return shape_.empty() ? 1 : shape_.back(); }  // the last dim
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }  // all dims but the last

  void* raw() const { return static_cast<char*>(storage_->data()) + offset_bytes_; }
  template <class T> T* data() const { return static_cast<T*>(raw()); }
  float* f32() const { MEMTRAIN_CHECK(dtype_ == DType::kF32); return data<float>(); }
  int32_t* i32() const { MEMTRAIN_CHECK(dtype_ == DType::kI32); return data<int32_t>(); }

  // Same storage, another shape with the same number of elements.
  Tensor view(Shape shape) const;
  // `shape` over the elements [offset, offset + numel(shape)) of this tensor's flat data, sharing storage.
  Tensor flat_view(int64_t offset, Shape shape) const;
  // Rows [begin, end) of the first dim, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  absl::StatusOr<Tensor> clone(MemCategory category) const;
  void fill_zero() const;
  // Storage identity: true when both views start at the same byte of the same allocation.
  bool same_data(const Tensor& o) const { return raw() == o.raw(); }

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_bytes_ = 0;
  Shape shape_;
  DType dtype_ = DType::kF32;
};

}  // namespace memtrain
