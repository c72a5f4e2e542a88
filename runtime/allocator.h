// Allocators of one memory kind. The engine allocates only at start-up (weights, the KV pool, the
// workspace arena); nothing on the step path allocates.
#pragma once

#include <cstddef>

#include "absl/status/statusor.h"
#include "runtime/memory_kind.h"

namespace flatfleet::runtime {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual MemoryKind kind() const = 0;
  // `bytes` > 0; ResourceExhausted (naming the size) when the memory is not there.
  virtual absl::StatusOr<void*> Allocate(size_t bytes) = 0;
  virtual void Free(void* pointer) = 0;
};

// Aligned (256-byte) host memory; process-wide and thread-safe.
Allocator& HostAllocator();

}  // namespace flatfleet::runtime
