// Round-to-nearest (RTN) quantization of a row-major float matrix: weights per output channel or
// per group, activations per token (dynamic) or per tensor (static scale).
//
// Numerics (the GPU activation quantizer must match them bit for bit):
//   symmetric:  s = fp16_up(clip * max|x| / qmax); code = clamp(rne(x / s), -qmax, qmax)
//   asymmetric: lo = clip * min(min x, 0), hi = clip * max(max x, 0),
//               s = fp16_up((hi - lo) / (2^b - 1)); zero = qmin + rne(-lo / s) (clamped),
//               code = clamp(rne(x / s) + zero, qmin, qmax)
//   balanced:   s = fp16_up(clip * max|x| / (2^b - 1)) (the half-step), code = clamp(rne((x / s -
//   1)
//               / 2), -2^(b-1), 2^(b-1) - 1): 2 * code + 1 is the odd integer nearest x / s
// where rne is round-half-to-even, x / s is an IEEE float32 division (GPU: __fdiv_rn) and fp16_up
// rounds a float up to the next FP16 value (never below the exact quotient, so without clipping
// no value saturates and |x - s * (code - zero)| <= s / 2). A group of zeros gets s = 1.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

// Rounds a positive finite float up to an FP16 value >= it. Errors if it exceeds the FP16 range.
absl::StatusOr<uint16_t> ScaleToHalfRoundingUp(float scale);

// Quantizes `values` ([rows, cols], row-major) with one scale (and zero point) per row group.
// Weights: rows = output channels. Per-token dynamic activations: rows = tokens, group_size 0.
absl::StatusOr<QuantizedMatrix> QuantizeRtn(std::span<const float> values, int64_t rows,
                                            int64_t cols, const QuantFormat& format);

// Per-tensor static quantization: calibrates one symmetric FP16 scale from calibration data...
absl::StatusOr<uint16_t> CalibratePerTensorScale(std::span<const float> calibration, int bits,
                                                 float clip_ratio);
// ...and applies a given scale to every element (values beyond the calibrated range saturate).
absl::StatusOr<QuantizedMatrix> QuantizeWithStaticScale(std::span<const float> values, int64_t rows,
                                                        int64_t cols, int bits,
                                                        uint16_t scale_fp16);

}  // namespace flatfleet::quant
