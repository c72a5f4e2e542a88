// Elementwise ops between the GEMMs: the SiLU-gated product of the MLP, dtype casts and the plain
// residual add. bfloat16 is the GEMM dtype, float32 the residual stream; the float arithmetic is
// that of the CPU reference (kernels/cpu/pointwise.h), with one round-to-nearest-even at the end
// where the output is bfloat16. Row strides are in elements; 0 means contiguous rows (= cols).
// Any shape: 16-byte vectors when cols and strides are multiples of 8 and pointers 16-byte
// aligned, else a scalar kernel. rows == 0 is a no-op.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

// out[r, i] = bf16(silu(g) * u) with g = gate_up[r, i], u = gate_up[r, inter + i] (the stacked
// gate/up GEMM output) and silu(g) = g / (1 + expf(-g)) in float32, as cpu::SiluMul.
struct DeviceSiluMul {
  const __nv_bfloat16* gate_up = nullptr;  // [rows, >= 2 * inter]
  int64_t gate_up_row_stride = 0;          // 0: 2 * inter
  int64_t rows = 0;
  int64_t inter = 0;
  __nv_bfloat16* out = nullptr;  // [rows, >= inter]
  int64_t out_row_stride = 0;    // 0: inter
};
absl::Status SiluMul(const DeviceSiluMul& args, cudaStream_t stream);

// out = float(in), exact.
struct DeviceCastBf16ToF32 {
  const __nv_bfloat16* in = nullptr;
  int64_t in_row_stride = 0;
  float* out = nullptr;
  int64_t out_row_stride = 0;
  int64_t rows = 0;
  int64_t cols = 0;
};
absl::Status CastBf16ToF32(const DeviceCastBf16ToF32& args, cudaStream_t stream);

// out = bf16(in), round to nearest even (NaN stays NaN, overflow gives infinity).
struct DeviceCastF32ToBf16 {
  const float* in = nullptr;
  int64_t in_row_stride = 0;
  __nv_bfloat16* out = nullptr;
  int64_t out_row_stride = 0;
  int64_t rows = 0;
  int64_t cols = 0;
};
absl::Status CastF32ToBf16(const DeviceCastF32ToBf16& args, cudaStream_t stream);

// residual += float(delta) in float32 (cpu::AddInPlace on the widened delta), for paths that do
// not go through FusedAddRmsNorm.
struct DeviceAddBf16ToF32 {
  float* residual = nullptr;
  int64_t residual_row_stride = 0;
  const __nv_bfloat16* delta = nullptr;
  int64_t delta_row_stride = 0;
  int64_t rows = 0;
  int64_t cols = 0;
};
absl::Status AddBf16ToF32(const DeviceAddBf16ToF32& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
