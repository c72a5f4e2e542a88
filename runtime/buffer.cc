#include "runtime/buffer.h"

#include "common/status_macros.h"

namespace flatfleet::runtime {

absl::StatusOr<Buffer> Buffer::Allocate(Allocator& allocator, size_t bytes) {
  Buffer buffer;
  if (bytes == 0) return buffer;
  FF_ASSIGN_OR_RETURN(buffer.data_, allocator.Allocate(bytes));
  buffer.allocator_ = &allocator;
  buffer.bytes_ = bytes;
  return buffer;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Reset();
    allocator_ = std::exchange(other.allocator_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Buffer::Reset() {
  if (allocator_ != nullptr && data_ != nullptr) allocator_->Free(data_);
  allocator_ = nullptr;
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace flatfleet::runtime
