// Residual add fused with RMSNorm, the op between every two GEMM blocks of a transformer layer:
//   residual[r] += float(delta[r])                          (when delta is set; stored back)
//   out[i] = bf16(weight * (residual[src] / sqrt(mean(residual[src]^2) + eps)))
// with float32 accumulation: the numerics of cpu::AddInPlace then cpu::RmsNormRows
// (kernels/cpu/pointwise.h), one bfloat16 rounding at the end (or none with out_f32).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

struct DeviceFusedAddRmsNorm {
  float* residual = nullptr;  // [rows, hidden] float32, device memory; updated when delta is set
  int64_t rows = 0;
  int64_t hidden = 0;
  const __nv_bfloat16* delta = nullptr;  // optional [rows, hidden] (an attention or MLP output)
  const float* weight = nullptr;         // [hidden]
  float eps = 1e-5f;
  // Optional [out_rows], device memory: out row i normalises residual row row_index[i] (the final
  // norm runs only on the rows that produce logits). An index outside [0, rows) gives a NaN row.
  // Without it out row i is residual row i, and out_rows must be 0 (meaning rows) or rows.
  const int32_t* row_index = nullptr;
  int64_t out_rows = 0;
  // Exactly one of: bfloat16 output (the next GEMM's input) or float32 (accuracy tests).
  __nv_bfloat16* out = nullptr;  // [out_rows, hidden]
  float* out_f32 = nullptr;      // [out_rows, hidden]
};

// Validates the arguments (InvalidArgument naming the field) and enqueues on `stream` (one kernel;
// two when both delta and row_index are set: the add over all rows, then the gathered norm).
// Any hidden size: 16-byte vector loads when hidden % 4 == 0 and the pointers are aligned
// (residual, weight, out_f32: 16 bytes; delta, out: 8 bytes), else a scalar kernel.
absl::Status FusedAddRmsNorm(const DeviceFusedAddRmsNorm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
