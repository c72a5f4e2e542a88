#include <cuda_bf16.h>

#include "kernels/cuda/rank_sum_launch.h"

namespace flatfleet::cuda::internal {
namespace {

template <bool kBf16>
__global__ void RankSumKernel(RankSumParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.count;
       i += stride) {
    float sum = 0.0f;
    for (int r = 0; r < p.num_inputs; ++r) {
      if constexpr (kBf16) {
        sum = __fadd_rn(sum, __bfloat162float(static_cast<const __nv_bfloat16*>(p.inputs[r])[i]));
      } else {
        sum = __fadd_rn(sum, static_cast<const float*>(p.inputs[r])[i]);
      }
    }
    if constexpr (kBf16) {
      static_cast<__nv_bfloat16*>(p.output)[i] = __float2bfloat16_rn(sum);
    } else {
      static_cast<float*>(p.output)[i] = sum;
    }
  }
}

}  // namespace

cudaError_t LaunchRankSum(const RankSumParams& params, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = (params.count + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 4096 ? blocks : 4096);  // grid-stride
  if (params.bf16) {
    RankSumKernel<true><<<grid, kThreads, 0, stream>>>(params);
  } else {
    RankSumKernel<false><<<grid, kThreads, 0, stream>>>(params);
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
