// An owned allocation of one memory kind, freed through the allocator that made it.
#pragma once

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "runtime/allocator.h"
#include "runtime/tensor_view.h"

namespace flatfleet::runtime {

class Buffer {
 public:
  Buffer() = default;
  static absl::StatusOr<Buffer> Allocate(Allocator& allocator, size_t bytes);
  ~Buffer() { Reset(); }
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  MemoryKind kind() const { return allocator_ ? allocator_->kind() : MemoryKind::kHost; }
  // The whole buffer as a dense [rows, cols] matrix of `type` (rows * cols must fit).
  TensorView View(ScalarType type, int64_t rows, int64_t cols) const {
    return TensorView(data_, type, kind(), rows, cols);
  }
  void Reset();

 private:
  Allocator* allocator_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace flatfleet::runtime
