// Shared by the kernels that read activation rows and quantize them: an element of a float32 or
// bfloat16 row as float (exact either way), and the per-token scale's FP16 rounding (the CPU's
// fp16_up, kernels/cpu/quant/rtn_quantizer.h).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

__device__ __forceinline__ float LoadAsFloat(const float* row, int64_t i) { return row[i]; }
__device__ __forceinline__ float LoadAsFloat(const uint16_t* row, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(row[i]) << 16);  // bfloat16 -> float is exact
}

// fp16_up of the reference: the FP16 value nearest the quotient, moved up one step when below it.
__device__ __forceinline__ uint16_t ScaleToHalfRoundingUp(float exact) {
  const __half rounded = __float2half_rn(exact);
  uint16_t bits = __half_as_ushort(rounded);
  if (__half2float(rounded) < exact) ++bits;
  return bits;
}

}  // namespace flatfleet::cuda::internal
