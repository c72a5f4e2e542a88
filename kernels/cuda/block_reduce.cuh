// Block-wide reductions shared by the row kernels (one block per row). The reduction tree is fixed
// by the block size, so a result depends only on the row's data: deterministic for any batch.
#pragma once

#include <cuda_runtime.h>

namespace flatfleet::cuda::internal {

__device__ __forceinline__ float WarpSum(float value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// Two __syncthreads; safe to call repeatedly (the scratch is re-read only after the second).
__device__ __forceinline__ float BlockSum(float value) {
  __shared__ float warp_sums[32];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int warps = blockDim.x / 32;
  value = WarpSum(value);
  __syncthreads();  // a previous call's readers are done with warp_sums
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  float total = lane < warps ? warp_sums[lane] : 0.0f;
  return WarpSum(total);
}

}  // namespace flatfleet::cuda::internal
