// Raw launcher of the fused residual add + RMSNorm kernels (fused_add_rmsnorm.cu). It checks
// nothing: callers go through FusedAddRmsNorm (fused_add_rmsnorm.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct AddRmsNormParams {
  float* residual = nullptr;  // [rows, hidden]
  int64_t rows = 0;
  int64_t hidden = 0;
  const uint16_t* delta = nullptr;  // optional [rows, hidden] bfloat16 bits
  const float* weight = nullptr;    // [hidden]
  float eps = 0.0f;
  const int32_t* row_index = nullptr;  // optional [out_rows]
  int64_t out_rows = 0;                // == rows without row_index
  void* out = nullptr;                 // [out_rows, hidden]
  bool out_is_bf16 = true;
};
cudaError_t LaunchAddRmsNorm(const AddRmsNormParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
