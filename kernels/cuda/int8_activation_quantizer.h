// Symmetric activation quantization on the GPU, bit-exact with the CPU reference
// (kernels/cpu/quant/rtn_quantizer.h) applied to the CPU input transforms' output:
//   per token (dynamic):  QuantizeRtn(t, rows, cols, {.bits, .symmetric = true, .clip_ratio}):
//                         s = fp16_up(clip * max|t| / qmax), code = clamp(rne(t / s), -qmax,
//                         qmax), an all-zero row gets s = 1;
//   static per tensor:    QuantizeWithStaticScale(t, rows, cols, bits, s): the given FP16 s for
//                         every row (no clip: it is in the calibrated scale), the same codes;
// qmax = 2^(bits - 1) - 1 (127 for INT8, 7 for W4A4's INT4 codes; the integer GEMMs take any of
// them as int8). t is the row after an optional per-column gather and IEEE division:
//   t_c = x[sources_c] / divisors_c
// which is SmoothQuant's x / s (sources = identity; quant/smooth_input_transform.h) and
// FlattenQuant's channel split (sources = the split channel, divisors = its split count;
// quant/flatten_input_transform.h, whose x / 1 for unsplit channels is x exactly).
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
inline constexpr int32_t kQuantizeScaleOverflow = 2;   // clip * max|t| / qmax beyond FP16

struct DeviceActivationQuantization {
  const void* x = nullptr;  // [rows, cols], float32 or bfloat16 (raw bits), device memory
  ActivationType type = ActivationType::kFloat32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t x_stride = 0;     // elements between rows of x; 0 means cols (x_cols with sources)
  float clip_ratio = 1.0f;  // (0, 1]
  // [rows, codes_stride]: each row's cols codes, then zeros up to codes_stride (0 means cols).
  // The zero tail pads K up to what the GEMMs need (a zero code adds nothing to any sum).
  int8_t* codes = nullptr;
  int64_t codes_stride = 0;
  uint16_t* scales = nullptr;  // [rows], FP16 bits
  int32_t* status = nullptr;   // optional device word, see above
  int qmax = 127;              // 2^(bits - 1) - 1: 1..127
  // FP16 bits of a positive finite per-tensor static scale (written to every row's scale; the
  // clip ratio is then unused); 0: the per-token dynamic scale. A non-finite t still flags
  // kQuantizeNonFiniteInput (the CPU's static quantizer does not check it).
  uint16_t static_scale = 0;
  // Optional device arrays [cols] of the transform above. With channel_sources, x has x_cols
  // columns (0 < x_cols <= x_stride; x_stride 0 means x_cols) and the caller guarantees every
  // source is in [0, x_cols) (the loader checks them on the host); divisors must be positive.
  const int32_t* channel_sources = nullptr;
  int64_t x_cols = 0;
  const float* channel_divisors = nullptr;
};

// Validates the arguments (InvalidArgument naming the field) and enqueues the kernel on `stream`.
absl::Status QuantizeActivationsInt8(const DeviceActivationQuantization& args, cudaStream_t stream);

}  // namespace flatfleet::cuda
