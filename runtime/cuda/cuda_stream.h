// An owned CUDA stream (non-blocking): one per engine, every kernel of a model runs on it.
#pragma once

#include <cuda_runtime.h>

#include "absl/status/statusor.h"

namespace flatfleet::runtime::cuda {

class CudaStream {
 public:
  static absl::StatusOr<CudaStream> Create(int device);
  CudaStream() = default;
  ~CudaStream();
  CudaStream(CudaStream&& other) noexcept;
  CudaStream& operator=(CudaStream&& other) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  int device() const { return device_; }
  absl::Status Synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
};

}  // namespace flatfleet::runtime::cuda
