#include "core/tensor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace memtrain {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_string(const Shape& s) { return absl::StrCat("(", absl::StrJoin(s, ", "), ")"); }

Storage::~Storage() {
  if (owner_ == nullptr) MemoryTracker::host().release(data_, bytes_, category_);
}

Tensor Tensor::borrowed(void* data, Shape shape, DType dtype, MemCategory category, std::shared_ptr<const void> owner) {
  MEMTRAIN_CHECK(owner != nullptr);
  Tensor t;
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  t.storage_ = std::make_shared<Storage>(data, bytes, category, std::move(owner));
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  return t;
}

absl::StatusOr<Tensor> Tensor::empty(Shape shape, DType dtype, MemCategory category) {
  for (int64_t d : shape) {
    if (d < 0) return absl::InvalidArgumentError(absl::StrCat("negative dimension in shape ", shape_string(shape)));
  }
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  MEMTRAIN_ASSIGN_OR_RETURN(void* ptr,
                            MemoryTracker::host().allocate(bytes, category, absl::StrCat("tensor ", shape_string(shape))));
  Tensor t;
  t.storage_ = std::make_shared<Storage>(ptr, bytes, category);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  return t;
}

absl::StatusOr<Tensor> Tensor::zeros(Shape shape, DType dtype, MemCategory category) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor t, empty(std::move(shape), dtype, category));
  t.fill_zero();
  return t;
}

absl::StatusOr<Tensor> Tensor::empty_like(const Tensor& t, MemCategory category) {
  return empty(t.shape(), t.dtype(), category);
}

absl::StatusOr<Tensor> Tensor::zeros_like(const Tensor& t, MemCategory category) {
  return zeros(t.shape(), t.dtype(), category);
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  if (i < 0) i += n;
  MEMTRAIN_CHECK(i >= 0 && i < n);
  return shape_[i];
}

Tensor Tensor::view(Shape shape) const {
  MEMTRAIN_CHECK_MSG(shape_numel(shape) == numel(), shape_string(shape_) + " -> " + shape_string(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::flat_view(int64_t offset, Shape shape) const {
  MEMTRAIN_CHECK(offset >= 0 && offset + shape_numel(shape) <= numel());
  Tensor t = *this;
  t.offset_bytes_ += static_cast<size_t>(offset) * dtype_size(dtype_);
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  MEMTRAIN_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0]);
  const int64_t row_elems = shape_[0] == 0 ? 0 : numel() / shape_[0];
  Tensor t = *this;
  t.offset_bytes_ += static_cast<size_t>(begin * row_elems) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

absl::StatusOr<Tensor> Tensor::clone(MemCategory category) const {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor t, empty(shape_, dtype_, category));
  std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

void Tensor::fill_zero() const { std::memset(raw(), 0, nbytes()); }

}  // namespace memtrain
