// Bias addition: a 2-D grid-stride loop, one element per thread step. Scalar accesses keep it
// correct for any alignment; it runs only where cuBLASLt's bias epilogue is not trusted, so
// simplicity wins over bandwidth.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/bias_add_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxGridX = 1024;  // column blocks; more only loop

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// No __restrict__ on x and y: they may be the same float32 matrix (in place).
template <typename Bias, typename Out>
__global__ void __launch_bounds__(kThreads)
    BiasAddKernel(int64_t rows, int64_t cols, const float* x, int64_t x_stride,
                  const Bias* __restrict__ bias, Out* y, int64_t y_stride) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* x_row = x + r * x_stride;
    Out* y_row = y + r * y_stride;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < cols;
         c += static_cast<int64_t>(gridDim.x) * kThreads) {
      // __fadd_rn: one float32 rounding, never contracted with anything.
      Store(y_row + c, __fadd_rn(x_row[c], ToFloat(bias[c])));
    }
  }
}

template <typename Bias, typename Out>
void Launch(const BiasAddParams& p, dim3 grid, cudaStream_t stream) {
  BiasAddKernel<Bias, Out><<<grid, kThreads, 0, stream>>>(p.rows, p.cols, p.x, p.x_stride,
                                                          static_cast<const Bias*>(p.bias),
                                                          static_cast<Out*>(p.y), p.y_stride);
}

}  // namespace

cudaError_t LaunchBiasAdd(const BiasAddParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.cols <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(std::min((p.cols + kThreads - 1) / kThreads, kMaxGridX)),
                  static_cast<unsigned>(std::min(p.rows, kMaxGridY)));
  if (p.bias_is_bf16) {
    if (p.y_is_bf16) {
      Launch<__nv_bfloat16, __nv_bfloat16>(p, grid, stream);
    } else {
      Launch<__nv_bfloat16, float>(p, grid, stream);
    }
  } else {
    if (p.y_is_bf16) {
      Launch<float, __nv_bfloat16>(p, grid, stream);
    } else {
      Launch<float, float>(p, grid, stream);
    }
  }
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
