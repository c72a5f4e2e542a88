#include "runtime/workspace_arena.h"

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::runtime {

size_t WorkspaceArena::Footprint(ScalarType type, int64_t rows, int64_t cols) {
  const size_t bytes = static_cast<size_t>(rows * cols) * ScalarSize(type);
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

absl::Status WorkspaceArena::Reserve(size_t bytes) {
  if (bytes <= buffer_.bytes()) return absl::OkStatus();
  if (used_ != 0) {
    return absl::FailedPreconditionError("workspace arena: Reserve while a step holds scratch");
  }
  buffer_.Reset();
  FF_ASSIGN_OR_RETURN(buffer_, Buffer::Allocate(*allocator_, bytes));
  return absl::OkStatus();
}

absl::StatusOr<void*> WorkspaceArena::TakeBytes(size_t bytes) {
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (used_ + rounded > buffer_.bytes()) {
    if (!growable_) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "workspace arena (%s): a step needs %d more bytes but only %d of %d are free; the arena "
          "is sized at start-up for the largest step (max_step_tokens)",
          MemoryKindName(allocator_->kind()), rounded, buffer_.bytes() - used_, buffer_.bytes()));
    }
    // Grow to the need plus a quarter (device memory is precious: the KV pool holds the rest).
    // Earlier views stay valid (the old buffer is kept until Reset).
    const size_t grown = (used_ + rounded) + (used_ + rounded) / 4;
    FF_ASSIGN_OR_RETURN(Buffer bigger, Buffer::Allocate(*allocator_, grown));
    retired_.push_back(std::move(buffer_));
    buffer_ = std::move(bigger);
    used_ = 0;
  }
  void* pointer = static_cast<char*>(buffer_.data()) + used_;
  used_ += rounded;
  high_water_ = std::max(high_water_, used_);
  return pointer;
}

absl::StatusOr<TensorView> WorkspaceArena::Take(ScalarType type, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("workspace arena: negative shape [%d, %d]", rows, cols));
  }
  const size_t bytes = static_cast<size_t>(rows * cols) * ScalarSize(type);
  FF_ASSIGN_OR_RETURN(void* pointer, TakeBytes(bytes == 0 ? 1 : bytes));
  return TensorView(pointer, type, allocator_->kind(), rows, cols);
}

}  // namespace flatfleet::runtime
