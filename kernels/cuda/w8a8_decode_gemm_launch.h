// Raw launcher of the decode W8A8 GEMM (w8a8_decode_gemm.cu). It checks nothing: callers go
// through GemmW8A8Decode (w8a8_decode_gemm.h), which rejects bad arguments before any launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

struct W8A8DecodeParams {
  const int8_t* x_codes = nullptr;      // [m, k]
  const uint16_t* x_scales = nullptr;   // [m] FP16 bits
  const int8_t* w_codes = nullptr;      // [n, k]
  const uint16_t* w_scales = nullptr;   // [n] FP16 bits
  const float* epilogue_add = nullptr;  // [n] or null
  void* y = nullptr;                    // [m, y_stride]
  int64_t y_stride = 0;                 // elements, >= n
  bool y_is_bf16 = false;
  int32_t m = 0, n = 0, k = 0;
  bool simple = false;  // the reference kernel
};
cudaError_t LaunchW8A8Decode(const W8A8DecodeParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
