// Raw launcher of the bias addition (bias_add.cu). It checks nothing: callers go through AddBias
// (bias_add.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct BiasAddParams {
  int64_t rows = 0, cols = 0;
  const float* x = nullptr;
  int64_t x_stride = 0;  // elements
  const void* bias = nullptr;
  bool bias_is_bf16 = true;
  void* y = nullptr;
  int64_t y_stride = 0;  // elements
  bool y_is_bf16 = true;
};
cudaError_t LaunchBiasAdd(const BiasAddParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
