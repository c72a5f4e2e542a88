// Fused residual add + RMSNorm + per-token INT8 quantisation: one block per row, the row held in
// registers (kUnits float4 per thread) between the three phases, so the residual is read once and
// written once, the codes written once. Each phase spells out the arithmetic of the kernel it
// replaces (fused_add_rmsnorm.cu's vector kernel, then int8_activation_quantizer.cu) with the
// same thread count and per-thread order, hence the same bits.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/activation_device.cuh"
#include "kernels/cuda/add_rmsnorm_quantize_launch.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/int8_activation_quantizer.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kMaxThreads = 512;  // FusedAddRmsNorm's
constexpr int kQmax = 127;
constexpr uint16_t kHalfOne = 0x3c00;
constexpr uint16_t kHalfInfinity = 0x7c00;

__device__ __forceinline__ float Bf16BitsToFloat(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);  // exact
}

// FusedAddRmsNorm's: 1 / sqrt(sum / n + eps) with IEEE division and square root.
__device__ __forceinline__ float InverseRms(float sum_of_squares, int64_t n, float eps) {
  return __fdiv_rn(1.0f,
                   __fsqrt_rn(__fadd_rn(__fdiv_rn(sum_of_squares, static_cast<float>(n)), eps)));
}

// Max over the block (any tree: max is exact). Two barriers; called once per launch.
__device__ __forceinline__ float BlockMax(float value) {
  __shared__ float warp_max[kMaxThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  __syncthreads();
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = value;
  __syncthreads();
  const int warps = blockDim.x / 32;
  value = warp_max[0];
  for (int w = 1; w < warps; ++w) value = fmaxf(value, warp_max[w]);
  return value;
}

__device__ __forceinline__ int8_t Code(float y, float scale) {
  const int code = __float2int_rn(__fdiv_rn(y, scale));  // IEEE division, RNE
  return static_cast<int8_t>(min(max(code, -kQmax), kQmax));
}

template <int kUnits>
__global__ void __launch_bounds__(kMaxThreads)
    AddRmsNormQuantizeKernel(const AddRmsNormQuantizeParams p) {
  const int64_t row = blockIdx.x;
  const int n4 = static_cast<int>(p.hidden / 4);
  float4* x = reinterpret_cast<float4*>(p.residual + row * p.hidden);
  const uint2* delta =
      p.delta != nullptr ? reinterpret_cast<const uint2*>(p.delta + row * p.hidden) : nullptr;

  // Phase 1: the add (stored back) and this thread's sum of squares, units tid, tid + T, ...
  float4 v[kUnits];
  float sum = 0.0f;
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    v[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (i < n4) {
      float4 r = x[i];
      if (delta != nullptr) {
        const uint2 d = delta[i];
        r = make_float4(__fadd_rn(r.x, Bf16BitsToFloat(d.x & 0xffffu)),
                        __fadd_rn(r.y, Bf16BitsToFloat(d.x >> 16)),
                        __fadd_rn(r.z, Bf16BitsToFloat(d.y & 0xffffu)),
                        __fadd_rn(r.w, Bf16BitsToFloat(d.y >> 16)));
        x[i] = r;
      }
      sum = fmaf(r.x, r.x, sum);
      sum = fmaf(r.y, r.y, sum);
      sum = fmaf(r.z, r.z, sum);
      sum = fmaf(r.w, r.w, sum);
      v[u] = r;
    }
  }
  const float inv_rms = InverseRms(BlockSum(sum), p.hidden, p.eps);

  // Phase 2: y = bf16(w * (x * inv_rms)), kept as the floats it rounds to (exact), and max|y|.
  const float4* weight = reinterpret_cast<const float4*>(p.weight);
  uint2* out = p.out != nullptr ? reinterpret_cast<uint2*>(p.out + row * p.hidden) : nullptr;
  float max_abs = 0.0f;
  bool finite = true;
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    if (i < n4) {
      const float4 w = weight[i];
      const __nv_bfloat162 low = __floats2bfloat162_rn(__fmul_rn(w.x, __fmul_rn(v[u].x, inv_rms)),
                                                       __fmul_rn(w.y, __fmul_rn(v[u].y, inv_rms)));
      const __nv_bfloat162 high = __floats2bfloat162_rn(__fmul_rn(w.z, __fmul_rn(v[u].z, inv_rms)),
                                                        __fmul_rn(w.w, __fmul_rn(v[u].w, inv_rms)));
      uint2 packed;
      packed.x = *reinterpret_cast<const uint32_t*>(&low);  // .x is the lower address
      packed.y = *reinterpret_cast<const uint32_t*>(&high);
      if (out != nullptr) out[i] = packed;
      v[u] = make_float4(Bf16BitsToFloat(packed.x & 0xffffu), Bf16BitsToFloat(packed.x >> 16),
                         Bf16BitsToFloat(packed.y & 0xffffu), Bf16BitsToFloat(packed.y >> 16));
      finite =
          finite && isfinite(v[u].x) && isfinite(v[u].y) && isfinite(v[u].z) && isfinite(v[u].w);
      max_abs = fmaxf(
          max_abs, fmaxf(fmaxf(fabsf(v[u].x), fabsf(v[u].y)), fmaxf(fabsf(v[u].z), fabsf(v[u].w))));
    }
  }
  const bool all_finite = __syncthreads_and(finite);
  max_abs = BlockMax(max_abs);

  // Phase 3: the quantizer's scale and codes of y.
  const float exact_scale = __fdiv_rn(__fmul_rn(max_abs, p.clip_ratio), static_cast<float>(kQmax));
  uint16_t scale_bits = exact_scale > 0.0f ? ScaleToHalfRoundingUp(exact_scale) : kHalfOne;
  int32_t error = 0;
  if (!all_finite) error |= kQuantizeNonFiniteInput;
  if (scale_bits >= kHalfInfinity) error |= kQuantizeScaleOverflow;
  if (error != 0) scale_bits = kHalfInfinity;
  if (threadIdx.x == 0) {
    p.scales[row] = scale_bits;
    if (error != 0 && p.status != nullptr) atomicOr(p.status, error);
  }
  const float scale = __half2float(__ushort_as_half(scale_bits));
  uint32_t* codes = reinterpret_cast<uint32_t*>(p.codes + row * p.codes_stride);
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    if (i < n4) {
      uint32_t packed = 0;  // codes 0 on error, as the quantizer
      if (error == 0) {
        packed = static_cast<uint8_t>(Code(v[u].x, scale)) |
                 static_cast<uint32_t>(static_cast<uint8_t>(Code(v[u].y, scale))) << 8 |
                 static_cast<uint32_t>(static_cast<uint8_t>(Code(v[u].z, scale))) << 16 |
                 static_cast<uint32_t>(static_cast<uint8_t>(Code(v[u].w, scale))) << 24;
      }
      codes[i] = packed;
    }
  }
  for (int64_t i = n4 + threadIdx.x; i < p.codes_stride / 4; i += blockDim.x) codes[i] = 0;
}

}  // namespace

cudaError_t LaunchAddRmsNormQuantize(const AddRmsNormQuantizeParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  // FusedAddRmsNorm's thread count for hidden / 4 units (whole warps, 1..16 of them): the block
  // tree of the sum of squares, hence inv_rms, is then the same.
  const int64_t units = p.hidden / 4;
  int64_t warps = (units + 31) / 32;
  if (warps < 1) warps = 1;
  if (warps > kMaxThreads / 32) warps = kMaxThreads / 32;
  const unsigned threads = static_cast<unsigned>(32 * warps);
  const int64_t per_thread = (units + threads - 1) / threads;
  const auto blocks = static_cast<unsigned>(p.rows);
  if (per_thread <= 1) {
    AddRmsNormQuantizeKernel<1><<<blocks, threads, 0, stream>>>(p);
  } else if (per_thread <= 2) {
    AddRmsNormQuantizeKernel<2><<<blocks, threads, 0, stream>>>(p);
  } else if (per_thread <= 4) {
    AddRmsNormQuantizeKernel<4><<<blocks, threads, 0, stream>>>(p);
  } else if (per_thread <= 8) {
    AddRmsNormQuantizeKernel<8><<<blocks, threads, 0, stream>>>(p);
  } else {
    return cudaErrorInvalidValue;  // beyond kAddRmsNormQuantizeMaxHidden: the wrapper refuses it
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
