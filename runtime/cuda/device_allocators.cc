#include "runtime/cuda/device_allocators.h"

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/str_format.h"
#include "runtime/cuda/cuda_status.h"

namespace flatfleet::runtime::cuda {
namespace {

class CudaDeviceAllocator final : public Allocator {
 public:
  explicit CudaDeviceAllocator(int device) : device_(device) {}
  MemoryKind kind() const override { return MemoryKind::kDevice; }
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    void* pointer = nullptr;
    const cudaError_t error = cudaMalloc(&pointer, bytes);
    if (error != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error so later calls are not blamed
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      return absl::ResourceExhaustedError(
          absl::StrFormat("GPU %d: cannot allocate %d bytes (%s); %d of %d bytes free", device_,
                          bytes, cudaGetErrorString(error), free_bytes, total_bytes));
    }
    return pointer;
  }
  void Free(void* pointer) override { cudaFree(pointer); }

 private:
  int device_;
};

class CudaPinnedAllocator final : public Allocator {
 public:
  MemoryKind kind() const override { return MemoryKind::kPinnedHost; }
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    void* pointer = nullptr;
    const cudaError_t error = cudaHostAlloc(&pointer, bytes, cudaHostAllocDefault);
    if (error != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(absl::StrFormat(
          "pinned host memory: cannot allocate %d bytes (%s)", bytes, cudaGetErrorString(error)));
    }
    return pointer;
  }
  void Free(void* pointer) override { cudaFreeHost(pointer); }
};

}  // namespace

Allocator& DeviceAllocator(int device) {
  static std::mutex mutex;
  static auto* allocators = new std::map<int, std::unique_ptr<CudaDeviceAllocator>>();
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*allocators)[device];
  if (slot == nullptr) slot = std::make_unique<CudaDeviceAllocator>(device);
  return *slot;
}

Allocator& PinnedHostAllocator() {
  static CudaPinnedAllocator* allocator = new CudaPinnedAllocator();
  return *allocator;
}

}  // namespace flatfleet::runtime::cuda
