#include "runtime/cuda/device_info.h"

#include <cuda_runtime.h>

#include "absl/strings/str_format.h"
#include "runtime/cuda/cuda_status.h"

namespace flatfleet::runtime::cuda {

absl::StatusOr<int> CountDevices() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    return 0;
  }
  FF_CUDA_RETURN_IF_ERROR(error);
  return count;
}

absl::StatusOr<DeviceMemory> QueryDeviceMemory(int device) {
  FF_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  size_t free_bytes = 0, total_bytes = 0;
  FF_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  return DeviceMemory{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
}

absl::StatusOr<std::string> DescribeDevice(int device) {
  cudaDeviceProp properties{};
  FF_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, device));
  return absl::StrFormat("%s (sm_%d%d, %.1f GiB)", properties.name, properties.major,
                         properties.minor,
                         static_cast<double>(properties.totalGlobalMem) / (1 << 30));
}

}  // namespace flatfleet::runtime::cuda
