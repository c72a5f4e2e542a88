// The per-token activation scale's FP16 rounding, shared by every kernel that quantizes
// activations (the CPU's fp16_up, kernels/cpu/quant/rtn_quantizer.h).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

// fp16_up of the reference: the FP16 value nearest the quotient, moved up one step when below it.
__device__ __forceinline__ uint16_t ScaleToHalfRoundingUp(float exact) {
  const __half rounded = __float2half_rn(exact);
  uint16_t bits = __half_as_ushort(rounded);
  if (__half2float(rounded) < exact) ++bits;
  return bits;
}

}  // namespace flatfleet::cuda::internal
