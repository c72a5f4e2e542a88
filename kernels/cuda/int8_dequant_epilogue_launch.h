// Raw launcher of the INT8 dequantising epilogue (int8_dequant_epilogue.cu); the checks are in
// int8_dequant_epilogue.cc.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct Int8DequantEpilogueParams {
  int64_t rows = 0, cols = 0;
  const int32_t* sums = nullptr;
  const uint16_t* x_scales = nullptr;
  const uint16_t* w_scales = nullptr;
  const float* add = nullptr;
  void* y = nullptr;
  int64_t y_stride = 0;
  bool y_is_bf16 = true;
};
cudaError_t LaunchInt8DequantEpilogue(const Int8DequantEpilogueParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
