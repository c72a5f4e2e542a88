#include "runtime/allocator.h"

#include <cstdlib>

#include "absl/strings/str_format.h"

namespace flatfleet::runtime {
namespace {

class AlignedHostAllocator final : public Allocator {
 public:
  MemoryKind kind() const override { return MemoryKind::kHost; }
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    constexpr size_t kAlignment = 256;
    void* pointer =
        std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    if (pointer == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("host allocator: cannot allocate %d bytes", bytes));
    }
    return pointer;
  }
  void Free(void* pointer) override { std::free(pointer); }
};

}  // namespace

Allocator& HostAllocator() {
  static AlignedHostAllocator* allocator = new AlignedHostAllocator();
  return *allocator;
}

}  // namespace flatfleet::runtime
