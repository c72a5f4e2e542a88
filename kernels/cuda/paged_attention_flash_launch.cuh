// Launch of an instantiation of the tensor-core paged-attention kernel.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/paged_attention_flash.cuh"

namespace flatfleet::cuda::internal::flash {

// Dynamic shared memory above 48 KB needs the opt-in; set on every launch (cheap, capturable, and
// right for whichever device is current).
template <class C, bool kDecode>
cudaError_t LaunchFlash(const PagedAttentionArgs& p, dim3 grid, cudaStream_t stream) {
  const cudaError_t attribute =
      cudaFuncSetAttribute(PagedFlashAttentionKernel<C, kDecode>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  if (attribute != cudaSuccess) return attribute;
  PagedFlashAttentionKernel<C, kDecode><<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal::flash
