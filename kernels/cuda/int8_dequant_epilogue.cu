#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/int8_dequant_epilogue_launch.h"

namespace flatfleet::cuda::internal {
namespace {

// One thread per output. The explicit _rn operations keep nvcc from contracting the multiply and
// the add into an FMA, which would round once where the reference rounds twice.
__global__ void Int8DequantEpilogueKernel(const Int8DequantEpilogueParams p) {
  const int64_t total = p.rows * p.cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / p.cols, j = i - r * p.cols;
    float value =
        __fmul_rn(__int2float_rn(p.sums[i]), __half2float(__ushort_as_half(p.w_scales[j])));
    value = __fmul_rn(value, __half2float(__ushort_as_half(p.x_scales[r])));
    if (p.add != nullptr) value = __fadd_rn(value, p.add[j]);
    if (p.y_is_bf16) {
      static_cast<__nv_bfloat16*>(p.y)[r * p.y_stride + j] = __float2bfloat16_rn(value);
    } else {
      static_cast<float*>(p.y)[r * p.y_stride + j] = value;
    }
  }
}

}  // namespace

cudaError_t LaunchInt8DequantEpilogue(const Int8DequantEpilogueParams& params,
                                      cudaStream_t stream) {
  const int64_t total = params.rows * params.cols;
  if (total == 0) return cudaSuccess;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 1 << 16));
  Int8DequantEpilogueKernel<<<blocks, 256, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
