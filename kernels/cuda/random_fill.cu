#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/cuda/random_fill_launch.h"
#include "kernels/random_hash.h"

namespace flatfleet::cuda::internal {
namespace {

__global__ void RandomFillBf16Kernel(__nv_bfloat16* out, int64_t count, uint64_t seed,
                                     float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16_rn(scale * kernels::HashToSymmetricUniform(seed, i));
  }
}

}  // namespace

cudaError_t LaunchRandomFillBf16(__nv_bfloat16* out, int64_t count, uint64_t seed, float scale,
                                 cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((count + 255) / 256, 65536);
  RandomFillBf16Kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(out, count, seed, scale);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
