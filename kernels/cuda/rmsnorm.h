// Launch wrapper for the CUDA RMSNorm kernel (numerics defined by the CPU reference:
// y = x / sqrt(mean(x^2) + eps) * gamma, accumulated in float32).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda {

// x, y: [rows, dim] float32 in device memory (may alias); gamma: [dim].
cudaError_t LaunchRmsNorm(const float* x, const float* gamma, int64_t rows, int64_t dim, float eps,
                          float* y, cudaStream_t stream);

}  // namespace flatfleet::cuda
