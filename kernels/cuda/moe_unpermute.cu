// MoE unpermute: one block per token. The token's routed slots are ordered by ascending expert
// index (cpu::ComposeSparseMoe visits experts in index order and adds each one's weighted
// output to the token's row), then every thread sums its columns in that order,
// acc = fmaf(y, weight, acc) from 0 in float32, and rounds once.
#include <cuda_bf16.h>

#include "kernels/cuda/moe_unpermute_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 128;

// kVec consecutive elements to float: one 8-byte (bf16) or 16-byte (float) load when kVec = 4.
template <int kVec>
__device__ __forceinline__ void LoadFloats(const bf16* src, float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    const uint2 raw = *reinterpret_cast<const uint2*>(src);
    const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
    v[0] = lo.x;
    v[1] = lo.y;
    v[2] = hi.x;
    v[3] = hi.y;
  } else {
#pragma unroll
    for (int c = 0; c < kVec; ++c) v[c] = __bfloat162float(src[c]);
  }
}
template <int kVec>
__device__ __forceinline__ void LoadFloats(const float* src, float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    const float4 raw = *reinterpret_cast<const float4*>(src);
    v[0] = raw.x;
    v[1] = raw.y;
    v[2] = raw.z;
    v[3] = raw.w;
  } else {
#pragma unroll
    for (int c = 0; c < kVec; ++c) v[c] = src[c];
  }
}

template <int kVec>
__device__ __forceinline__ void StoreFloats(const float (&v)[kVec], bf16* dst) {
  if constexpr (kVec == 4) {
    uint2 raw;
    *reinterpret_cast<__nv_bfloat162*>(&raw.x) = __floats2bfloat162_rn(v[0], v[1]);
    *reinterpret_cast<__nv_bfloat162*>(&raw.y) = __floats2bfloat162_rn(v[2], v[3]);
    *reinterpret_cast<uint2*>(dst) = raw;
  } else {
#pragma unroll
    for (int c = 0; c < kVec; ++c) dst[c] = __float2bfloat16_rn(v[c]);
  }
}
template <int kVec>
__device__ __forceinline__ void StoreFloats(const float (&v)[kVec], float* dst) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int c = 0; c < kVec; ++c) dst[c] = v[c];
  }
}

template <typename In, typename Out, int kVec>
__global__ void __launch_bounds__(kThreads) MoeUnpermuteKernel(const UnpermuteParams p) {
  __shared__ int64_t source_offset[kUnpermuteMaxTopK];  // element offset of the Yp row
  __shared__ float weight[kUnpermuteMaxTopK];
  const int64_t row = blockIdx.x;
  // Thread j < top_k places slot j at its rank in (expert index, slot) order among the valid
  // slots (a strict total order, so the ranks are 0 .. count - 1 without gaps or repeats).
  const int slot = threadIdx.x;
  bool valid = false;
  if (slot < p.top_k) {
    const int64_t entry = row * p.top_k + slot;
    const int position = p.inverse_permutation[entry];
    valid = position >= 0;
    if (valid) {
      const int id = p.expert_ids[entry];
      int rank = 0;
      for (int j = 0; j < p.top_k; ++j) {
        if (p.inverse_permutation[row * p.top_k + j] < 0) continue;
        const int other = p.expert_ids[row * p.top_k + j];
        if (other < id || (other == id && j < slot)) ++rank;
      }
      source_offset[rank] = static_cast<int64_t>(position) * p.hidden;
      weight[rank] = p.expert_weights[entry];
    }
  }
  const int count = __syncthreads_count(valid);
  const In* yp = static_cast<const In*>(p.yp);
  Out* out = static_cast<Out*>(p.out) + row * p.hidden;
  for (int64_t h = static_cast<int64_t>(threadIdx.x) * kVec; h < p.hidden; h += kThreads * kVec) {
    float acc[kVec];
#pragma unroll
    for (int c = 0; c < kVec; ++c) acc[c] = 0.0f;
#pragma unroll 1
    for (int i = 0; i < count; ++i) {
      float y[kVec];
      LoadFloats<kVec>(yp + source_offset[i] + h, y);
      const float w = weight[i];
#pragma unroll
      for (int c = 0; c < kVec; ++c) acc[c] = fmaf(y[c], w, acc[c]);
    }
    StoreFloats<kVec>(acc, out + h);
  }
}

template <typename In, typename Out>
cudaError_t LaunchTyped(const UnpermuteParams& p, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(p.rows);
  if (p.vectorized) {
    MoeUnpermuteKernel<In, Out, 4><<<blocks, kThreads, 0, stream>>>(p);
  } else {
    MoeUnpermuteKernel<In, Out, 1><<<blocks, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchMoeUnpermute(const UnpermuteParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.hidden <= 0) return cudaSuccess;
  if (params.yp_float32) {
    return params.out_float32 ? LaunchTyped<float, float>(params, stream)
                              : LaunchTyped<float, bf16>(params, stream);
  }
  return params.out_float32 ? LaunchTyped<bf16, float>(params, stream)
                            : LaunchTyped<bf16, bf16>(params, stream);
}

}  // namespace flatfleet::cuda::internal
