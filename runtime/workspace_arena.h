// One buffer, sized once, from which a forward pass takes its scratch matrices in order and which
// is reset before the next one: no allocation on the step path, and the same sequence of requests
// gets the same addresses every step (which CUDA graph replay relies on). Sizing: the model asks
// for the bytes its largest step needs (LlamaModel::WorkspaceBytes(max_step_tokens)); a request
// beyond the capacity is an error naming both sizes, never a silent allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/buffer.h"
#include "runtime/tensor_view.h"

namespace flatfleet::runtime {

class WorkspaceArena {
 public:
  static constexpr size_t kAlignment = 256;

  WorkspaceArena() = default;
  explicit WorkspaceArena(Allocator& allocator) : allocator_(&allocator) {}

  // (Re)allocates to hold at least `bytes`; only between steps. A host arena may grow on demand
  // (set_growable), a device arena only here.
  absl::Status Reserve(size_t bytes);
  void set_growable(bool growable) { growable_ = growable; }

  // A dense [rows, cols] matrix of `type` from the arena, valid until Reset().
  absl::StatusOr<TensorView> Take(ScalarType type, int64_t rows, int64_t cols);
  absl::StatusOr<void*> TakeBytes(size_t bytes);
  // Scratch an op needs only while its kernels run (they are ordered on one stream, so the next
  // op's kernels may reuse it): take a mark before, release to it after. A mark taken before the
  // arena grew is ignored.
  struct Mark {
    const void* buffer;
    size_t used;
  };
  Mark mark() const { return {buffer_.data(), used_}; }
  void Release(const Mark& mark) {
    if (mark.buffer == buffer_.data() && mark.used <= used_) used_ = mark.used;
  }
  void Reset() {
    used_ = 0;
    retired_.clear();
  }

  size_t capacity() const { return buffer_.bytes(); }
  size_t used() const { return used_; }
  size_t high_water() const { return high_water_; }
  // Bytes a request occupies (rounded up to the alignment).
  static size_t Footprint(ScalarType type, int64_t rows, int64_t cols);

 private:
  Allocator* allocator_ = &HostAllocator();
  Buffer buffer_;
  size_t used_ = 0;
  size_t high_water_ = 0;
  bool growable_ = false;
  // A growable arena that ran out keeps its old buffer alive until Reset, since views into it
  // are still in use during the step.
  std::vector<Buffer> retired_;
};

}  // namespace flatfleet::runtime
