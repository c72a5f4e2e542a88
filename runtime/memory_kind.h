// Where a buffer lives. Kernels of a backend read and write only its own kind (host for the CPU
// reference, device for CUDA); pinned host memory stages copies between the two.
#pragma once

namespace flatfleet::runtime {

enum class MemoryKind { kHost, kPinnedHost, kDevice };

constexpr const char* MemoryKindName(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kHost:
      return "host";
    case MemoryKind::kPinnedHost:
      return "pinned";
    case MemoryKind::kDevice:
      return "device";
  }
  return "?";
}

}  // namespace flatfleet::runtime
