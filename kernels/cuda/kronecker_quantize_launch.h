// Raw launcher of the fused Kronecker transform + quantizer (kronecker_quantize.h validates).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/kronecker_quantize_shape.h"

namespace flatfleet::cuda::internal {

struct KroneckerQuantizeParams {
  const void* x = nullptr;
  bool x_is_bf16 = true;
  int64_t rows = 0;
  int64_t x_stride = 0;
  int n1 = 0;
  int n2 = 0;
  const float* divisors = nullptr;
  const float* p1 = nullptr;
  const float* p2 = nullptr;
  float clip_ratio = 1.0f;
  int qmax = 7;
  int8_t* codes = nullptr;
  int64_t codes_stride = 0;
  uint16_t* scales = nullptr;
  int rows_per_block = 1;  // 1, 2 or 4 (KroneckerQuantizeRowsPerBlock); 1 where cluster > 1
  int cluster = 1;         // CTAs per token row: 1, or 2..min(8, n1 / 16) (the split path)
  // Shared memory as KroneckerQuantizeSharedLayout places it (offsets in floats) for these rows
  // per block or this cluster, and where stage 2 reads P2.
  int64_t left_offset = 0;
  int64_t p2_offset = 0;
  int64_t maxima_offset = 0;
  size_t shared_bytes = 0;
  int p2_source = 0;  // KroneckerP2Source: 0 L2, 1 staged beside P1, 2 over P1 in chunks
  int p2_ld = 0;      // KroneckerQuantizeP2Ld(n2)
  int p2_chunk_steps = 0;
};

// Enqueues the kernel: p.rows_per_block rows per block, or with cluster > 1 one row per cluster of
// that many CTAs (cudaLaunchKernelEx; an error return has been cleared from the last error).
cudaError_t LaunchKroneckerQuantize(const KroneckerQuantizeParams& params, cudaStream_t stream);

// How many clusters of `cluster` split CTAs the current device runs at once (GPCs of whole free
// SMs; 0 where it cannot, e.g. in a partition of too few SMs, or on error): asked once per device.
int KroneckerQuantizeActiveClusters(int cluster);

}  // namespace flatfleet::cuda::internal
