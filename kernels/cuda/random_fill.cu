#include <cuda_bf16.h>
#include <cuda_fp16.h>

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

// A code in [-q, q] from a uniform u in [-1, 1): 2q + 1 equal bins.
__device__ __forceinline__ int CodeFromUniform(float u, int q) {
  const int code = static_cast<int>(floorf((u + 1.0f) * 0.5f * static_cast<float>(2 * q + 1))) - q;
  return min(max(code, -q), q);
}

__global__ void RandomInt8CodesKernel(int8_t* out, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = static_cast<int8_t>(CodeFromUniform(kernels::HashToSymmetricUniform(seed, i), 127));
  }
}

__global__ void RandomInt4WordsKernel(uint32_t* out, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t word = 0;
    for (int j = 0; j < 8; ++j) {
      const int code = CodeFromUniform(kernels::HashToSymmetricUniform(seed, i * 8 + j), 7);
      word |= (static_cast<uint32_t>(code) & 0xFu) << (4 * j);
    }
    out[i] = word;
  }
}

__global__ void RandomScalesKernel(uint16_t* out, int64_t count, uint64_t seed, float center,
                                   float spread) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float value = center * (1.0f + spread * kernels::HashToSymmetricUniform(seed, i));
    out[i] = __half_as_ushort(__float2half_rn(value));
  }
}

unsigned BlocksFor(int64_t count) {
  return static_cast<unsigned>(std::min<int64_t>((count + 255) / 256, 65536));
}

}  // namespace

cudaError_t LaunchRandomFillCodes(void* out, int64_t count, uint64_t seed, int bits,
                                  cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (bits == 8) {
    RandomInt8CodesKernel<<<BlocksFor(count), 256, 0, stream>>>(static_cast<int8_t*>(out), count,
                                                                seed);
  } else {
    RandomInt4WordsKernel<<<BlocksFor(count), 256, 0, stream>>>(static_cast<uint32_t*>(out), count,
                                                                seed);
  }
  return cudaGetLastError();
}

cudaError_t LaunchRandomFillScales(uint16_t* out, int64_t count, uint64_t seed, float center,
                                   float spread, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  RandomScalesKernel<<<BlocksFor(count), 256, 0, stream>>>(out, count, seed, center, spread);
  return cudaGetLastError();
}

cudaError_t LaunchRandomFillBf16(__nv_bfloat16* out, int64_t count, uint64_t seed, float scale,
                                 cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((count + 255) / 256, 65536);
  RandomFillBf16Kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(out, count, seed, scale);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
