// W8A8 GEMM for decode-sized batches (m = 1..16 rows), bound by streaming the INT8 weights, with a
// fused epilogue. Bit-exact with the CPU reference quant::GemmW8A8 (kernels/cpu/quant/
// quantized_gemm.h) followed by AddBias (bias_add.h) with a float32 vector:
//   y[r, j] = round_to_y_type(gemm[r, j] + epilogue_add[j])       (no addition when null)
// where gemm[r, j] = fmaf(float(acc), s_w[j], 0) * s_x[r] is the reference's float32 result, the
// addition one float32 rounding and the conversion to bf16 one round-to-nearest-even.
// Every launch is asynchronous on the given stream, allocates nothing and may be graph-captured.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm_element_type.h"

namespace flatfleet::cuda {

// kAuto = kTensorCore; kSimple is a one-thread-per-output reference kernel (slow, obviously
// right, a fallback).
enum class W8A8DecodeKernel { kAuto, kTensorCore, kSimple };

// INT8 per-token activations x INT8 per-channel weights, both symmetric.
struct DeviceW8A8DecodeGemm {
  int64_t m = 0;                        // 1..16
  int64_t n = 0;                        // >= 1
  int64_t k = 0;                        // a multiple of 16, at most 133144 (int32 cannot overflow)
  const int8_t* x_codes = nullptr;      // [m, k], row-major (rows k bytes apart), 16-byte aligned
  const uint16_t* x_scales = nullptr;   // [m], FP16 bits
  const int8_t* w_codes = nullptr;      // [n, k], row-major, 16-byte aligned
  const uint16_t* w_scales = nullptr;   // [n], FP16 bits
  const float* epilogue_add = nullptr;  // [n] added to every row, or null
  void* y = nullptr;                    // [m, n] of y_type, rows y_stride elements apart
  int64_t y_stride = 0;                 // 0 means n
  GemmElementType y_type = GemmElementType::kFloat32;
  W8A8DecodeKernel kernel = W8A8DecodeKernel::kAuto;
};

// Validates (InvalidArgument naming the field, OutOfRange when int32 could overflow) and enqueues
// on `stream`.
absl::Status GemmW8A8Decode(const DeviceW8A8DecodeGemm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
