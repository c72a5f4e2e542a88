// Integer Scale's int32 fold and single float epilogue, one thread per output (see
// integer_scale_epilogue.h for the numerics).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/integer_scale_epilogue_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float HalfBitsToFloat(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

__global__ void __launch_bounds__(kThreads)
    IntegerScaleEpilogueKernel(IntegerScaleEpilogueParams p) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t row = blockIdx.y;
  if (col >= p.cols) return;
  const int32_t* sums = p.group_sums + (row * p.cols + col) * p.groups;
  const int32_t* mult = p.multipliers + col * p.groups;
  // Exact in int32 (the multipliers were chosen so no partial sum can overflow); unsigned
  // arithmetic gives the same bits without signed-overflow questions.
  uint32_t acc = 0;
  for (int64_t g = 0; g < p.groups; ++g) {
    acc += static_cast<uint32_t>(sums[g]) * static_cast<uint32_t>(mult[g]);
  }
  const float scaled = __fmul_rn(
      __fmul_rn(__int2float_rn(static_cast<int32_t>(acc)), HalfBitsToFloat(p.x_scales[row])),
      HalfBitsToFloat(p.base_scales[col]));
  // 2^-a exactly (a <= 30 keeps it a normal float); one rounding, as the CPU's ldexp.
  const float unamplify = __int_as_float((127 - p.amplifier_bits) << 23);
  float value = __fmul_rn(scaled, unamplify);
  if (p.add != nullptr) value = __fadd_rn(value, p.add[col]);
  if (p.y_is_bf16) {
    static_cast<__nv_bfloat16*>(p.y)[row * p.y_stride + col] = __float2bfloat16_rn(value);
  } else {
    static_cast<float*>(p.y)[row * p.y_stride + col] = value;
  }
}

}  // namespace

cudaError_t LaunchIntegerScaleEpilogue(const IntegerScaleEpilogueParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((p.cols + kThreads - 1) / kThreads),
                  static_cast<unsigned>(p.rows));
  IntegerScaleEpilogueKernel<<<grid, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
