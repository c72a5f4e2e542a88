// Device (cudaMalloc) and pinned host (cudaHostAlloc) allocators. Plain allocations only, never
// managed memory.
#pragma once

#include "runtime/allocator.h"

namespace flatfleet::runtime::cuda {

// Allocations on `device` (cudaSetDevice'd around each call).
Allocator& DeviceAllocator(int device);
Allocator& PinnedHostAllocator();

}  // namespace flatfleet::runtime::cuda
