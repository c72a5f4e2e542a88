// Raw launcher of the Integer Scale epilogue (integer_scale_epilogue.h validates the arguments).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct IntegerScaleEpilogueParams {
  int64_t rows = 0, cols = 0, groups = 0;
  const int32_t* group_sums = nullptr;
  const int32_t* multipliers = nullptr;
  const uint16_t* x_scales = nullptr;
  const uint16_t* base_scales = nullptr;
  int amplifier_bits = 0;
  const float* add = nullptr;
  void* y = nullptr;
  int64_t y_stride = 0;
  bool y_is_bf16 = false;
};

cudaError_t LaunchIntegerScaleEpilogue(const IntegerScaleEpilogueParams& params,
                                       cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
