// Raw launcher of the Hadamard rotation kernel (hadamard_transform.h validates its arguments).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct HadamardRowsParams {
  const void* x = nullptr;
  bool x_is_bf16 = true;
  int64_t rows = 0;
  int64_t x_stride = 0;
  int64_t power_of_two = 1;
  int64_t block_size = 1;
  const double* signs = nullptr;
  const double* block = nullptr;
  double norm = 1.0;
  float* y = nullptr;
  int64_t y_stride = 0;
};

cudaError_t LaunchHadamardRows(const HadamardRowsParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
