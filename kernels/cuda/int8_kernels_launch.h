// Raw launchers of the INT8 kernels (int8_activation_quantizer.cu, int8_gemm.cu). They check
// nothing: callers go through the validating wrappers in int8_activation_quantizer.h and
// int8_gemm.h, which turn bad shapes into errors before anything reaches the device.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

// Bits of the device status word written by the activation quantizer (OR-ed over rows).
inline constexpr int32_t kQuantizeNonFiniteInput = 1;
inline constexpr int32_t kQuantizeScaleOverflow = 2;

struct QuantizeRowsParams {
  const void* x = nullptr;  // [rows, cols] float32 or bfloat16 bits
  bool x_is_bf16 = false;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t x_stride = 0;  // >= cols
  float clip_ratio = 1.0f;
  int8_t* codes = nullptr;                   // [rows, codes_stride]; zeros after the first cols
  int64_t codes_stride = 0;                  // >= cols
  uint16_t* scales = nullptr;                // [rows] FP16 bits
  int32_t* status = nullptr;                 // optional
  int qmax = 127;                            // largest code: 2^(bits - 1) - 1 for 2..8 bits
  uint16_t static_scale = 0;                 // FP16 bits of a per-tensor scale; 0: per-token max
  const int32_t* channel_sources = nullptr;  // [cols]: x column code column c reads; null: c
  const float* channel_divisors = nullptr;   // [cols]: divided into column c first; null: none
};
cudaError_t LaunchQuantizeRowsInt8(const QuantizeRowsParams& params, cudaStream_t stream);

struct GemmParams {
  const int8_t* x_codes = nullptr;     // [m, k]
  const uint16_t* x_scales = nullptr;  // [m] FP16 bits
  // W8A8: int8 [n, k]. W4A8: uint32 [n, k / 8], INT4 interleaved (int4_interleaved.h).
  const void* w = nullptr;
  const uint16_t* w_scales = nullptr;     // [n, groups] FP16 bits
  const int8_t* w_zero_points = nullptr;  // [n, groups] or null (symmetric); W4A8 only
  bool w_unsigned_nibbles = false;        // W4A8: nibbles hold code + 8 (asymmetric packing)
  int32_t m = 0, n = 0, k = 0;
  int32_t group_size = 0;           // W4A8: multiple of 32 dividing k; W8A8: k
  float* y = nullptr;               // [m, n]
  int32_t* accumulators = nullptr;  // optional [m, n, groups]
};
cudaError_t LaunchGemmW8A8(const GemmParams& params, cudaStream_t stream);
cudaError_t LaunchGemmW4A8(const GemmParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
