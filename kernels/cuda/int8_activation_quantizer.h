// Per-token dynamic INT8 activation quantization on the GPU, bit-exact with the CPU reference
// QuantizeRtn(values, rows, cols, {.bits = 8, .symmetric = true, .group_size = 0, .clip_ratio})
// (kernels/cpu/quant/rtn_quantizer.h): s = fp16_up(clip * max|x| / 127),
// code = clamp(rne(x / s), -127, 127), an all-zero row gets s = 1.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace flatfleet::cuda {

enum class ActivationType { kFloat32, kBfloat16 };

// Bits of the optional device status word (OR-ed over rows; the caller zeroes it first and reads
// it at its next synchronisation). A row with either error gets scale +inf and codes 0 where the
// CPU reference returns an error.
inline constexpr int32_t kQuantizeNonFiniteInput = 1;  // NaN or infinity in the row
inline constexpr int32_t kQuantizeScaleOverflow = 2;   // clip * max|x| / 127 beyond FP16

struct DeviceActivationQuantization {
  const void* x = nullptr;  // [rows, cols], float32 or bfloat16 (raw bits), device memory
  ActivationType type = ActivationType::kFloat32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t x_stride = 0;     // elements between rows of x; 0 means cols
  float clip_ratio = 1.0f;  // (0, 1]
  // [rows, codes_stride]: each row's cols codes, then zeros up to codes_stride (0 means cols).
  // The zero tail pads K up to what the GEMMs need (a zero code adds nothing to any sum).
  int8_t* codes = nullptr;
  int64_t codes_stride = 0;
  uint16_t* scales = nullptr;  // [rows], FP16 bits
  int32_t* status = nullptr;   // optional device word, see above
};

// Validates the arguments (InvalidArgument naming the field) and enqueues the kernel on `stream`.
absl::Status QuantizeActivationsInt8(const DeviceActivationQuantization& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
