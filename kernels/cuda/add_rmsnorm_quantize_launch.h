// Raw launcher of the fused add + RMSNorm + INT8 quantisation kernel (add_rmsnorm_quantize.cu). It
// checks nothing: callers go through AddRmsNormQuantizeInt8 (add_rmsnorm_quantize.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct AddRmsNormQuantizeParams {
  float* residual = nullptr;                       // [rows, hidden]
  const uint16_t* delta = nullptr;                 // optional [rows, hidden] bfloat16 bits
  const float* weight = nullptr;                   // [hidden]
  int8_t* codes = nullptr;                         // [rows, codes_stride]
  uint16_t* scales = nullptr;                      // [rows]
  uint16_t* out = nullptr;                         // optional [rows, hidden] bfloat16 bits
  int32_t* status = nullptr;                       // optional
  int64_t rows = 0, hidden = 0, codes_stride = 0;  // hidden % 4 == 0, codes_stride % 4 == 0
  float eps = 0.0f, clip_ratio = 1.0f;
};
cudaError_t LaunchAddRmsNormQuantize(const AddRmsNormQuantizeParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
