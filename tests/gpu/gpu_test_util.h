// Helpers for GPU tests: device detection and RAII device buffers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"

namespace flatfleet::cuda::testing {

// True when a CUDA device is usable; tests call GTEST_SKIP() otherwise.
bool HasGpu();

#define FF_SKIP_WITHOUT_GPU()                                            \
  do {                                                                   \
    if (!::flatfleet::cuda::testing::HasGpu()) GTEST_SKIP() << "no GPU"; \
  } while (false)

#define FF_CUDA_ASSERT(expr) ASSERT_EQ((expr), cudaSuccess) << cudaGetErrorString(expr)

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (cudaMalloc(&ptr_, count * sizeof(T)) != cudaSuccess) ptr_ = nullptr;
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (ptr_) cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
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
