// Device attributes: the current device's SM count and architecture, and kernel attributes set
// once per device. cudaFuncSetAttribute (e.g. the dynamic shared memory
// opt-in) applies to the current device only, so a process that drives several GPUs must set it
// on each; a plain function-local static would set it on the first device only.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace flatfleet::cuda {

// The current device's SM count (0 on error) and whether it is a Hopper (compute capability 9.0,
// where the sm_90a build's wgmma kernels run): cached host attribute reads, no sync, fine under a
// stream capture.
inline int CurrentDeviceSmCount() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    return 0;
  }
  return count;
}

inline bool CurrentDeviceIsHopper() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    return false;
  }
  return major == 9 && minor == 0;
}

// Opts `kernel` into `bytes` of dynamic shared memory on the current device, the first time it is
// asked for that device (ordinals 0-63 are remembered; higher ones set it on every call). The
// flags are per kernel instantiation: call from a template keyed by the kernel.
template <typename Kernel>
cudaError_t SetMaxDynamicSharedMemoryOncePerDevice(std::atomic<uint64_t>& configured_devices,
                                                   Kernel kernel, int bytes) {
  int device = 0;
  if (const cudaError_t error = cudaGetDevice(&device); error != cudaSuccess) return error;
  const uint64_t bit = device >= 0 && device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (configured_devices.load(std::memory_order_acquire) & bit) != 0) {
    return cudaSuccess;
  }
  const cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (error != cudaSuccess) {
    // Returned to the caller, and cleared from the thread's last error so that the next,
    // unrelated launch check does not report it. Not remembered: the next launch tries again.
    (void)cudaGetLastError();
    return error;
  }
  configured_devices.fetch_or(bit, std::memory_order_release);
  return cudaSuccess;
}

}  // namespace flatfleet::cuda
