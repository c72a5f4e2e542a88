// Residual add + RMSNorm + per-token INT8 quantisation in one kernel: what runs between two
// quantized GEMM blocks of a layer, where today three passes (FusedAddRmsNorm to bf16, then
// QuantizeActivationsInt8 of that bf16) read and write the row. Per row r:
//   residual[r] += float(delta[r])                        (when delta is set; stored back)
//   y = bf16(weight * (residual[r] * inv_rms))            (exactly FusedAddRmsNorm's bf16 output)
//   s = fp16_up(clip * max|y| / 127) (1 for an all-zero row), code = clamp(rne(y / s), +-127)
//                                                         (exactly QuantizeActivationsInt8 of y)
// The same thread count, per-thread order and block tree as FusedAddRmsNorm, so residual, y,
// codes and scales are bit for bit those of the unfused GPU sequence. Against the CPU reference
// (kernels/cpu/add_rmsnorm_quantize.h) the residual is exact, y within 1 bf16 ulp (the sum of
// squares is ordered differently there), and the codes and scales are exactly the CPU
// quantizer's of y. Asynchronous on the given stream, allocates nothing, graph-capturable.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

struct DeviceAddRmsNormQuantize {
  float* residual = nullptr;  // [rows, hidden] float32; updated when delta is set; 16-B aligned
  int64_t rows = 0;
  int64_t hidden = 0;                    // a multiple of 4, at most kAddRmsNormQuantizeMaxHidden
  const __nv_bfloat16* delta = nullptr;  // optional [rows, hidden]; 8-byte aligned
  const float* weight = nullptr;         // [hidden]; 16-byte aligned
  float eps = 1e-5f;
  float clip_ratio = 1.0f;  // (0, 1], as DeviceActivationQuantization::clip_ratio
  // [rows, codes_stride]: each row's hidden codes, then zeros up to codes_stride (0 means hidden;
  // a multiple of 4 otherwise, >= hidden). 4-byte aligned.
  int8_t* codes = nullptr;
  int64_t codes_stride = 0;
  uint16_t* scales = nullptr;    // [rows], FP16 bits
  __nv_bfloat16* out = nullptr;  // optional [rows, hidden]: y itself; 8-byte aligned
  int32_t* status = nullptr;     // optional, the kQuantize* bits of int8_activation_quantizer.h
};

// Rows up to this width run (4 floats per thread step, at most 8 steps of 512 threads).
inline constexpr int64_t kAddRmsNormQuantizeMaxHidden = 16384;

// Validates (InvalidArgument naming the field: shapes, null or misaligned pointers) and enqueues
// one kernel on `stream`.
absl::Status AddRmsNormQuantizeInt8(const DeviceAddRmsNormQuantize& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
