// Helpers for GPU tests: device detection and RAII device buffers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace flatfleet::cuda::testing {

// True when a CUDA device is usable.
bool HasGpu();

// What cudaGetDeviceCount says about this machine. "No GPU" is only a machine without NVIDIA
// hardware or kernel driver: cudaErrorNoDevice, or no driver at all (the runtime then reports
// cudaErrorInsufficientDriver and /proc/driver/nvidia is absent). Any other failure, e.g. a
// loaded driver the runtime cannot use, is a broken machine and must not read as "no GPU".
struct GpuProbe {
  bool usable = false;
  bool broken = false;
  std::string message;  // the CUDA error when not usable
};
inline GpuProbe ProbeGpu() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error == cudaSuccess && count > 0) return {true, false, ""};
  if (error == cudaSuccess) return {false, false, "no CUDA device"};
  const bool kernel_driver = std::filesystem::exists("/proc/driver/nvidia/version");
  const bool no_gpu =
      error == cudaErrorNoDevice || (error == cudaErrorInsufficientDriver && !kernel_driver);
  return {false, !no_gpu,
          std::string("cudaGetDeviceCount: ") + cudaGetErrorName(error) + ": " +
              cudaGetErrorString(error) +
              (kernel_driver ? " (the NVIDIA kernel driver is loaded)" : "")};
}

// Skips a test on a machine without a GPU; fails it, with the CUDA error, on one whose GPU or
// driver is broken.
#define FF_SKIP_WITHOUT_GPU()                                                                      \
  do {                                                                                             \
    const ::flatfleet::cuda::testing::GpuProbe ff_probe_ = ::flatfleet::cuda::testing::ProbeGpu(); \
    if (ff_probe_.broken) FAIL() << "GPU unusable: " << ff_probe_.message;                         \
    if (!ff_probe_.usable) GTEST_SKIP() << "no GPU (" << ff_probe_.message << ")";                 \
  } while (false)

#define FF_CUDA_ASSERT(expr) ASSERT_EQ((expr), cudaSuccess) << cudaGetErrorString(expr)

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (cudaMalloc(&ptr_, count * sizeof(T)) != cudaSuccess) ptr_ = nullptr;
  }
  // The copy has landed when this returns: cudaMemcpy from pageable memory may return before its
  // DMA into device memory is done, and a kernel on a non-blocking stream (the backends') does not
  // wait for the legacy stream, so under load a poisoned output's fill could land after the
  // kernel wrote it (the session-11 stored-layer failure: every output the poison).
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (ptr_) {
      cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
      cudaStreamSynchronize(nullptr);
    }
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return static_cast<T*>(ptr_); }
  std::vector<T> ToHost() const {
    std::vector<T> host(count_);
    cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t count_;
};

}  // namespace flatfleet::cuda::testing
