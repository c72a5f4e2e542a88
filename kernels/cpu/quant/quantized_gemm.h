// Integer GEMM references (computed in parallel tiles by group_dot_products.h; the results do not
// depend on the tiling or the thread count): Y[m, n] = sum_k Xhat[m, k] * What[n, k], with X
// quantized per token and W per output channel or per group along K (both any of 2..8 bits,
// symmetric or with zero points).
//
// Integer part (exact): for each scale group g of K,
//   acc[m, n, g] = sum_{k in g} (xcode - xzero)[m, k] * (wcode - wzero)[n, k]      (int32)
// int32 cannot overflow because the call checks K * max|xcode - xzero| * max|wcode - wzero| <=
// 2^31 - 1 (e.g. INT8 x INT8 symmetric: K <= 133144; 8-bit with zero points: K <= 33025). A GPU
// kernel may compute sum xcode * wcode and correct with row sums: the integer result is identical.
//
// Float epilogue (float32, this order; the GPU must use it to be bit-exact, or stay within
// (G + 2) * 2^-24 * s_x[m] * sum_g |float(acc_g) * s_w[n, g]| if it reorders the group sum):
//   partial = 0; for g = 0..G-1: partial = fma(float(acc[m, n, g]), s_w[n, g], partial)
//   Y[m, n] = partial * s_x[m]
// float(acc) is round-to-nearest-even (GPU: __int2float_rn); fma is one rounding (GPU: fmaf).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

// How much of its operands a GEMM checks: everything (codes, zero points and scales in range: a
// pass over every element), or the shapes, sizes and the int32 bound only — for a layer whose
// weights were validated when it was built (QuantizedLinear::Create / FromParts) and activations
// fresh from the quantizer, which the serving path runs on every step.
enum class OperandChecks { kFull, kShapesOnly };

struct QuantizedGemmResult {
  int64_t m = 0;
  int64_t n = 0;
  int64_t groups = 0;
  std::vector<int32_t> group_accumulators;  // [m][n][groups]
  std::vector<float> output;                // [m][n]
};

// Generic Wb-Aa (ABQ-LLM style; also W4A4, W8A8, W4A8). `activations` must be per token (one
// group per row); `weights` has activations.cols columns and any group size.
absl::StatusOr<QuantizedGemmResult> QuantizedGemm(const QuantizedMatrix& activations,
                                                  const QuantizedMatrix& weights,
                                                  OperandChecks checks = OperandChecks::kFull);

// QuantizedGemm's `output` alone, into `output` ([m][n]): the same values bit for bit, without the
// [m][n][groups] accumulators (at 512 tokens x 14336 x 32 groups those are 940 MB).
absl::Status QuantizedGemmOutput(const QuantizedMatrix& activations, const QuantizedMatrix& weights,
                                 std::span<float> output,
                                 OperandChecks checks = OperandChecks::kFull);

// The same computation restricted to the named formats (errors otherwise), as the GPU kernels are.
// W8A8: INT8 symmetric per-token activations x INT8 symmetric per-channel weights.
absl::StatusOr<QuantizedGemmResult> GemmW8A8(const QuantizedMatrix& activations,
                                             const QuantizedMatrix& weights);
// W4A8: INT8 symmetric per-token activations x INT4 (any group size, zero points allowed).
absl::StatusOr<QuantizedGemmResult> GemmW4A8(const QuantizedMatrix& activations,
                                             const QuantizedMatrix& weights);
// W4A4: INT4 per-token activations x INT4 weights.
absl::StatusOr<QuantizedGemmResult> GemmW4A4(const QuantizedMatrix& activations,
                                             const QuantizedMatrix& weights);

// Checks K * max|x operand| * max|w operand| <= 2^31 - 1 and the shapes; shared with the
// integer-scale GEMM.
absl::Status CheckInt32Gemm(const QuantizedMatrix& activations, const QuantizedMatrix& weights,
                            OperandChecks checks = OperandChecks::kFull);

}  // namespace flatfleet::quant
