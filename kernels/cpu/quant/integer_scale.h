// Integer Scale (arXiv 2405.14597): fine-grained W4A8 without per-group float multiplies.
//
// For output channel n with FP16 group scales s[n, g], let s_min[n] = min_g s[n, g] and pick one
// power-of-two amplifier 2^a per layer. The integer multipliers are
//   mult[n, g] = rne(s[n, g] / s_min[n] * 2^a)          (>= 2^a, exact in double, offline)
// and the GEMM accumulates in int32
//   acc[m, n] = sum_g acc_g[m, n, g] * mult[n, g],      acc_g as in quantized_gemm.h
// with one float epilogue per output: Y[m, n] = ((float(acc) * s_x[m]) * s_min[n]) * 2^-a
// (float32, this order; * 2^-a is exact).
//
// Overflow bound: |acc| <= sum_g |acc_g| * mult_g <= K * Ax * Aw * max_g mult[n, g], where Ax, Aw
// are the operand bounds max|code - zero| (127 and 7 for symmetric W4A8). Every partial sum obeys
// the same bound, so int32 is safe iff K * Ax * Aw * max_{n,g} mult[n, g] <= 2^31 - 1. We choose
// the largest a in [0, max_amplifier_bits] that satisfies it (K = 4096, W4A8: max mult <= 589, so
// a = 7 when every channel's scale ratio s_max / s_min is <= 4.6).
//
// Rounding bound versus the float-scale GEMM (exact arithmetic): the effective group scale
// s_min * mult * 2^-a differs from s by at most s_min * 2^-(a+1), hence
//   |Y_int - Y_float| <= s_x[m] * s_min[n] * 2^-(a+1) * sum_g |acc_g[m, n, g]|
//                     <= 2^-(a+1) * s_x[m] * sum_g |acc_g| * s[n, g]        (relative form)
// plus float32 epilogue rounding of both sides (< (G + 4) * 2^-24 * s_x * sum_g |acc_g| * s_g).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

struct IntegerScaledWeight {
  QuantizedMatrix weight;             // codes, zero points and the original FP16 group scales
  int amplifier_bits = 0;             // a
  std::vector<int32_t> multipliers;   // [n][groups], mult = rne(s / s_min * 2^a)
  std::vector<uint16_t> base_scales;  // [n], FP16 s_min of the channel
};

// Derives the multipliers for activations of `activation_format` (per token, K = weight.cols),
// choosing the largest amplifier <= max_amplifier_bits for which int32 accumulation cannot
// overflow. Errors if even a = 0 could overflow (use the float-scale GEMM then).
absl::StatusOr<IntegerScaledWeight> MakeIntegerScaledWeight(const QuantizedMatrix& weight,
                                                            const QuantFormat& activation_format,
                                                            int max_amplifier_bits = 16);

struct IntegerScaleGemmResult {
  int64_t m = 0;
  int64_t n = 0;
  std::vector<int32_t> accumulators;  // [m][n], sum_g acc_g * mult_g
  std::vector<float> output;          // [m][n]
};

absl::StatusOr<IntegerScaleGemmResult> IntegerScaleGemm(
    const QuantizedMatrix& activations, const IntegerScaledWeight& weight,
    OperandChecks checks = OperandChecks::kFull);

}  // namespace flatfleet::quant
