#include "kernels/cuda/rmsnorm.h"

namespace flatfleet::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float WarpSum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// One block per row: each thread accumulates a strided slice of x^2, then a block reduction.
__global__ void RmsNormKernel(const float* x, const float* __restrict__ gamma,
                              int64_t dim, float eps, float* y) {  // x and y may alias
  const int64_t row = blockIdx.x;
  const float* x_row = x + row * dim;
  float* y_row = y + row * dim;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum = fmaf(x_row[i], x_row[i], sum);
  sum = WarpSum(sum);
  __shared__ float warp_sums[kThreads / 32];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    sum = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
    sum = WarpSum(sum);
    if (lane == 0) warp_sums[0] = sum;
  }
  __syncthreads();
  // Exact division and sqrt (not rsqrtf) to stay close to the CPU reference.
  const float inv_rms = 1.0f / sqrtf(warp_sums[0] / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) y_row[i] = gamma[i] * (x_row[i] * inv_rms);
}

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, const float* gamma, int64_t rows, int64_t dim,
                          float eps, float* y, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, gamma, dim, eps, y);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda
