// W8A8 and W4A8 GEMMs on the GPU's INT8 tensor cores, bit-exact with the CPU reference
// GemmW8A8 / GemmW4A8 (kernels/cpu/quant/quantized_gemm.h): the same int32 group sums and the
// same float epilogue order. Y[m, n] = sum_k X[m, k] W[n, k], all row-major, device memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

// INT8 per-token activations x INT8 per-channel weights, both symmetric.
struct DeviceW8A8Gemm {
  int64_t m = 0, n = 0, k = 0;      // k: a multiple of 16, at most 133144 (int32 cannot overflow)
  const int8_t* x_codes = nullptr;  // [m, k], 16-byte aligned
  const uint16_t* x_scales = nullptr;  // [m], FP16 bits
  const int8_t* w_codes = nullptr;     // [n, k], 16-byte aligned
  const uint16_t* w_scales = nullptr;  // [n], FP16 bits
  float* y = nullptr;                  // [m, n]
  int32_t* accumulators = nullptr;     // optional [m, n]: the exact integer sums
};

// INT8 per-token activations x INT4 weights with per-group FP16 scales and optional zero points.
struct DeviceW4A8Gemm {
  int64_t m = 0, n = 0, k = 0;         // k: a multiple of 32
  int64_t group_size = 0;              // a multiple of 32 dividing k (k itself: per channel)
  const int8_t* x_codes = nullptr;     // [m, k], 16-byte aligned
  const uint16_t* x_scales = nullptr;  // [m], FP16 bits
  // [n, k / 8] words in the INT4 interleaved layout (int4_interleaved.h), i.e.
  // PackedInt4Matrix::words, 16-byte aligned.
  const uint32_t* w_words = nullptr;
  // PackedInt4Matrix::signedness: signed nibbles (symmetric) or code + 8 (asymmetric).
  bool w_unsigned_nibbles = false;
  const uint16_t* w_scales = nullptr;     // [n, k / group_size], FP16 bits
  const int8_t* w_zero_points = nullptr;  // [n, k / group_size] signed convention, or null
  float* y = nullptr;                     // [m, n]
  int32_t* group_accumulators = nullptr;  // optional [m, n, k / group_size]
};

// Validate (InvalidArgument / OutOfRange naming the field) and enqueue on `stream`.
absl::Status GemmW8A8(const DeviceW8A8Gemm& args, cudaStream_t stream);
absl::Status GemmW4A8(const DeviceW4A8Gemm& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
