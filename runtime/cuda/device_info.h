// Which CUDA devices this process can use, and their memory. A broken driver is reported as an
// error, never mistaken for "no GPU".
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace flatfleet::runtime::cuda {

struct DeviceMemory {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};

// Number of usable devices: 0 when there is no driver or no device (cudaErrorNoDevice,
// cudaErrorInsufficientDriver), an error for anything else (a driver that fails to initialise).
absl::StatusOr<int> CountDevices();
absl::StatusOr<DeviceMemory> QueryDeviceMemory(int device);
// "NVIDIA H200 (sm_90, 139.8 GiB)".
absl::StatusOr<std::string> DescribeDevice(int device);

}  // namespace flatfleet::runtime::cuda
