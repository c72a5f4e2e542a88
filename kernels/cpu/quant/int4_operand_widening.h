// Low-bit weights as INT4 operands. A 2- or 3-bit weight (symmetric, asymmetric with zero points,
// or ABQ-LLM's balanced odd levels 2 * code + 1) is rewritten as a 4-bit matrix whose every
// operand Centered(row, col) = code - zero is the original's, with the same scales, groups and
// zero points: every integer GEMM sum (quantized_gemm.h) and so every output is bit for bit the
// original's. This is how the GPU runs W2A8 / W3A8 and their ABQ variants on its W4A8 kernels:
// exact, at W4A8's speed and 4 bits of device memory per weight (a native 2/3-bit GEMM is the
// low-bit GEMM work).
//   symmetric b-bit:  codes within +-(2^(b-1) - 1), already 4-bit symmetric codes (+-7);
//   asymmetric b-bit: codes and zeros within [-2^(b-1), 2^(b-1) - 1], valid 4-bit ones;
//   balanced b-bit:   code c becomes the 4-bit symmetric code 2c + 1 (|2c + 1| <= 7 for b <= 3).
// A balanced 4-bit weight (operands up to +-15) does not fit and is refused.
#pragma once

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

// Whether WidenToInt4Operands accepts a weight of this format (bits 2 or 3, any kind).
bool WidensToInt4Operands(const QuantFormat& format);

// The 4-bit matrix with `weight`'s operands. InvalidArgument for other formats, or when `weight`
// fails Validate().
absl::StatusOr<QuantizedMatrix> WidenToInt4Operands(const QuantizedMatrix& weight);

}  // namespace flatfleet::quant
