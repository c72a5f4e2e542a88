// Raw launcher of the random fill kernel (random_fill.cu); random_fill.cc validates.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

cudaError_t LaunchRandomFillBf16(__nv_bfloat16* out, int64_t count, uint64_t seed, float scale,
                                 cudaStream_t stream);
cudaError_t LaunchRandomFillCodes(void* out, int64_t count, uint64_t seed, int bits,
                                  cudaStream_t stream);
cudaError_t LaunchRandomFillScales(uint16_t* out, int64_t count, uint64_t seed, float center,
                                   float spread, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
