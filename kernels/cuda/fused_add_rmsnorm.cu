// Residual add + RMSNorm: one block per output row. Pass 1 adds delta (storing the sum back) and
// accumulates the sum of squares; pass 2 re-reads the row (the block's own writes, now in L1/L2)
// and writes weight * x * inv_rms.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/fused_add_rmsnorm_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kMaxThreads = 512;

__device__ __forceinline__ float Bf16BitsToFloat(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);  // exact
}

__device__ __forceinline__ void Store(float* out, int64_t i, float v) { out[i] = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* out, int64_t i, float v) {
  out[i] = __float2bfloat16_rn(v);
}

// The reference: 1 / sqrt(sum / n + eps) with IEEE division and square root.
__device__ __forceinline__ float InverseRms(float sum_of_squares, int64_t n, float eps) {
  return __fdiv_rn(1.0f,
                   __fsqrt_rn(__fadd_rn(__fdiv_rn(sum_of_squares, static_cast<float>(n)), eps)));
}

struct RowPointers {
  float* x;               // the residual row to normalise
  const uint16_t* delta;  // null: no add
  bool valid;             // false: row_index out of range, write NaN
};

__device__ __forceinline__ RowPointers ResolveRow(const AddRmsNormParams& p) {
  int64_t src = blockIdx.x;
  bool valid = true;
  if (p.row_index != nullptr) {
    src = p.row_index[blockIdx.x];
    valid = src >= 0 && src < p.rows;
    if (!valid) src = 0;
  }
  return {p.residual + src * p.hidden, p.delta != nullptr ? p.delta + src * p.hidden : nullptr,
          valid};
}

// Any hidden size and alignment. `normalize` false: only the add (the first of the two launches
// used with row_index and delta).
template <typename Out>
__global__ void __launch_bounds__(kMaxThreads)
    AddRmsNormScalarKernel(AddRmsNormParams p, bool normalize) {
  const RowPointers row = ResolveRow(p);
  const int64_t n = p.hidden;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = row.x[i];
    if (row.delta != nullptr) {
      v = __fadd_rn(v, Bf16BitsToFloat(row.delta[i]));
      row.x[i] = v;
    }
    sum = fmaf(v, v, sum);
  }
  if (!normalize) return;
  const float inv_rms = InverseRms(BlockSum(sum), n, p.eps);
  Out* out = static_cast<Out*>(p.out) + static_cast<int64_t>(blockIdx.x) * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float y = __fmul_rn(p.weight[i], __fmul_rn(row.x[i], inv_rms));
    Store(out, i, row.valid ? y : __int_as_float(0x7fc00000));
  }
}

// Four bfloat16 (8 bytes) <-> four floats.
__device__ __forceinline__ float4 WidenBf16x4(uint2 packed) {
  return make_float4(Bf16BitsToFloat(packed.x & 0xffffu), Bf16BitsToFloat(packed.x >> 16),
                     Bf16BitsToFloat(packed.y & 0xffffu), Bf16BitsToFloat(packed.y >> 16));
}
__device__ __forceinline__ void Store4(float* out, int64_t i4, float4 v) {
  reinterpret_cast<float4*>(out)[i4] = v;
}
__device__ __forceinline__ void Store4(__nv_bfloat16* out, int64_t i4, float4 v) {
  const __nv_bfloat162 low = __floats2bfloat162_rn(v.x, v.y);  // .x is the lower address
  const __nv_bfloat162 high = __floats2bfloat162_rn(v.z, v.w);
  uint2 packed;
  packed.x = *reinterpret_cast<const uint32_t*>(&low);
  packed.y = *reinterpret_cast<const uint32_t*>(&high);
  reinterpret_cast<uint2*>(out)[i4] = packed;
}

// hidden % 4 == 0 and aligned pointers: 16-byte residual and weight accesses, 8-byte bfloat16.
template <typename Out>
__global__ void __launch_bounds__(kMaxThreads)
    AddRmsNormVec4Kernel(AddRmsNormParams p, bool normalize) {
  const RowPointers row = ResolveRow(p);
  const int64_t n4 = p.hidden / 4;
  float4* x = reinterpret_cast<float4*>(row.x);
  const uint2* delta = reinterpret_cast<const uint2*>(row.delta);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
    float4 v = x[i];
    if (delta != nullptr) {
      const float4 d = WidenBf16x4(delta[i]);
      v = make_float4(__fadd_rn(v.x, d.x), __fadd_rn(v.y, d.y), __fadd_rn(v.z, d.z),
                      __fadd_rn(v.w, d.w));
      x[i] = v;
    }
    sum = fmaf(v.x, v.x, sum);
    sum = fmaf(v.y, v.y, sum);
    sum = fmaf(v.z, v.z, sum);
    sum = fmaf(v.w, v.w, sum);
  }
  if (!normalize) return;
  const float inv_rms = InverseRms(BlockSum(sum), p.hidden, p.eps);
  const float4* weight = reinterpret_cast<const float4*>(p.weight);
  Out* out = static_cast<Out*>(p.out) + static_cast<int64_t>(blockIdx.x) * p.hidden;
  const float nan = __int_as_float(0x7fc00000);
  for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
    const float4 v = x[i];
    const float4 w = weight[i];
    float4 y = make_float4(
        __fmul_rn(w.x, __fmul_rn(v.x, inv_rms)), __fmul_rn(w.y, __fmul_rn(v.y, inv_rms)),
        __fmul_rn(w.z, __fmul_rn(v.z, inv_rms)), __fmul_rn(w.w, __fmul_rn(v.w, inv_rms)));
    if (!row.valid) y = make_float4(nan, nan, nan, nan);
    Store4(out, i, y);
  }
}

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Enough threads for one 4-wide (or scalar) step per thread up to kMaxThreads, whole warps.
unsigned ThreadsFor(int64_t units) {
  int64_t warps = (units + 31) / 32;
  if (warps < 1) warps = 1;
  if (warps > kMaxThreads / 32) warps = kMaxThreads / 32;
  return static_cast<unsigned>(32 * warps);
}

template <typename Out>
cudaError_t Launch(const AddRmsNormParams& p, cudaStream_t stream) {
  const bool vec = p.hidden % 4 == 0 && Aligned(p.residual, 16) && Aligned(p.weight, 16) &&
                   Aligned(p.delta, 8) && Aligned(p.out, sizeof(Out) * 4);
  const unsigned threads = ThreadsFor(vec ? p.hidden / 4 : p.hidden);
  auto kernel = vec ? AddRmsNormVec4Kernel<Out> : AddRmsNormScalarKernel<Out>;
  if (p.row_index != nullptr && p.delta != nullptr) {
    // The add must reach every residual row, the norm only the gathered ones.
    AddRmsNormParams add = p;
    add.row_index = nullptr;
    if (p.rows > 0) {
      kernel<<<static_cast<unsigned>(p.rows), threads, 0, stream>>>(add, /*normalize=*/false);
    }
    AddRmsNormParams norm = p;
    norm.delta = nullptr;
    if (p.out_rows > 0) {
      kernel<<<static_cast<unsigned>(p.out_rows), threads, 0, stream>>>(norm, /*normalize=*/true);
    }
  } else if (p.out_rows > 0) {
    kernel<<<static_cast<unsigned>(p.out_rows), threads, 0, stream>>>(p, /*normalize=*/true);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchAddRmsNorm(const AddRmsNormParams& p, cudaStream_t stream) {
  if (p.hidden <= 0) return cudaSuccess;
  return p.out_is_bf16 ? Launch<__nv_bfloat16>(p, stream) : Launch<float>(p, stream);
}

}  // namespace flatfleet::cuda::internal
