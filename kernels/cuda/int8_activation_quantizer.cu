// Symmetric activation quantization to codes of 2..8 bits, per token (dynamic) or with a static
// per-tensor scale, after an optional column gather and division; bit-exact with the CPU RTN
// quantizer (kernels/cpu/quant/rtn_quantizer.h) on the CPU transforms' output: one block per row.
#include <cuda_fp16.h>

#include "kernels/cuda/activation_device.cuh"
#include "kernels/cuda/int8_kernels_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;
constexpr uint16_t kHalfOne = 0x3c00;
constexpr uint16_t kHalfInfinity = 0x7c00;

__device__ float BlockMax(float value) {
  __shared__ float warp_max[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = value;
  __syncthreads();
  value = warp_max[0];
  for (int w = 1; w < kThreads / 32; ++w) value = fmaxf(value, warp_max[w]);
  return value;
}

// Column c of the transformed row: x[source_c] / divisor_c (FlattenQuant's split channels,
// SmoothQuant's x / s), an IEEE division like the CPU transforms'; the plain column without them.
template <typename In>
__device__ __forceinline__ float TransformedValue(const In* row, int64_t c, const int32_t* sources,
                                                  const float* divisors) {
  const float v = LoadAsFloat(row, sources != nullptr ? static_cast<int64_t>(sources[c]) : c);
  return divisors != nullptr ? __fdiv_rn(v, divisors[c]) : v;
}

template <typename In>
__global__ void __launch_bounds__(kThreads)
    QuantizeRowsInt8Kernel(const In* x, QuantizeRowsParams p) {
  const In* row = x + blockIdx.x * p.x_stride;
  int8_t* row_codes = p.codes + blockIdx.x * p.codes_stride;
  // max|x| equals the reference's max(-min(min x, 0), max(max x, 0)); max is order-free.
  float max_abs = 0.0f;
  bool finite = true;
  for (int64_t i = threadIdx.x; i < p.cols; i += kThreads) {
    const float v = TransformedValue(row, i, p.channel_sources, p.channel_divisors);
    finite = finite && isfinite(v);
    max_abs = fmaxf(max_abs, fabsf(v));
  }
  const bool all_finite = __syncthreads_and(finite);
  max_abs = BlockMax(max_abs);

  uint16_t scale_bits = p.static_scale;
  int32_t error = 0;
  if (p.static_scale == 0) {
    // Scaling the extremes by clip then taking the max equals scaling the max (rounding is
    // monotone and sign-symmetric), and the reference divides by qmax exactly.
    const float exact_scale =
        __fdiv_rn(__fmul_rn(max_abs, p.clip_ratio), static_cast<float>(p.qmax));
    scale_bits = exact_scale > 0.0f ? ScaleToHalfRoundingUp(exact_scale) : kHalfOne;
    if (scale_bits >= kHalfInfinity) error |= kQuantizeScaleOverflow;
  }
  if (!all_finite) error |= kQuantizeNonFiniteInput;
  if (error != 0) scale_bits = kHalfInfinity;
  if (threadIdx.x == 0) {
    p.scales[blockIdx.x] = scale_bits;
    if (error != 0 && p.status != nullptr) atomicOr(p.status, error);
  }
  const float scale = __half2float(__ushort_as_half(scale_bits));
  for (int64_t i = threadIdx.x; i < p.cols; i += kThreads) {
    int code = 0;
    if (error == 0) {
      const float v = TransformedValue(row, i, p.channel_sources, p.channel_divisors);
      code = __float2int_rn(__fdiv_rn(v, scale));  // IEEE division, RNE (saturating conversion)
      code = min(max(code, -p.qmax), p.qmax);
    }
    row_codes[i] = static_cast<int8_t>(code);
  }
  for (int64_t i = p.cols + threadIdx.x; i < p.codes_stride; i += kThreads) row_codes[i] = 0;
}

}  // namespace

cudaError_t LaunchQuantizeRowsInt8(const QuantizeRowsParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const auto blocks = static_cast<unsigned>(p.rows);
  if (p.x_is_bf16) {
    QuantizeRowsInt8Kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint16_t*>(p.x), p);
  } else {
    QuantizeRowsInt8Kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(p.x), p);
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
