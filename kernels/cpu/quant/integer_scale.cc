#include "kernels/cpu/quant/integer_scale.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "kernels/cpu/quant/group_dot_products.h"
#include "kernels/cpu/quant/quantized_gemm.h"

namespace flatfleet::quant {
namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// mult for scale ratio `ratio` = s / s_min >= 1.
int64_t Multiplier(double ratio, int amplifier_bits) {
  return static_cast<int64_t>(std::nearbyint(std::ldexp(ratio, amplifier_bits)));
}

}  // namespace

absl::StatusOr<IntegerScaledWeight> MakeIntegerScaledWeight(const QuantizedMatrix& weight,
                                                            const QuantFormat& activation_format,
                                                            int max_amplifier_bits) {
  if (max_amplifier_bits < 0 || max_amplifier_bits > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_amplifier_bits must be in 0..30, got ", max_amplifier_bits));
  }
  if (activation_format.bits < 2 || activation_format.bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation bits must be in 2..8, got ", activation_format.bits));
  }
  if (auto status = weight.Validate(); !status.ok()) return status;
  const int64_t n_size = weight.rows, groups = weight.GroupsPerRow();
  IntegerScaledWeight out;
  out.weight = weight;
  out.base_scales.resize(n_size);
  double max_ratio = 1.0;
  for (int64_t n = 0; n < n_size; ++n) {
    uint16_t min_bits = weight.scales[n * groups];
    for (int64_t g = 1; g < groups; ++g) {
      if (weight.Scale(n, g) < HalfToFloat(min_bits)) min_bits = weight.scales[n * groups + g];
    }
    out.base_scales[n] = min_bits;
    for (int64_t g = 0; g < groups; ++g) {
      max_ratio = std::max(max_ratio, double{weight.Scale(n, g)} / HalfToFloat(min_bits));
    }
  }
  // Worst |acc| per unit of multiplier: K * Ax * Aw.
  const int64_t per_unit =
      weight.cols * MaxAbsCodeMinusZero(activation_format) * MaxAbsCodeMinusZero(weight.format);
  int chosen = -1;
  for (int a = max_amplifier_bits; a >= 0; --a) {
    const int64_t max_mult = Multiplier(max_ratio, a);
    if (max_mult <= kInt32Max / per_unit) {
      chosen = a;
      break;
    }
  }
  if (chosen < 0) {
    return absl::OutOfRangeError(
        absl::StrCat("integer scale cannot avoid int32 overflow: K = ", weight.cols,
                     ", largest group scale ratio within a channel = ", max_ratio));
  }
  out.amplifier_bits = chosen;
  out.multipliers.resize(n_size * groups);
  for (int64_t n = 0; n < n_size; ++n) {
    const double base = HalfToFloat(out.base_scales[n]);
    for (int64_t g = 0; g < groups; ++g) {
      out.multipliers[n * groups + g] =
          static_cast<int32_t>(Multiplier(weight.Scale(n, g) / base, chosen));
    }
  }
  return out;
}

absl::StatusOr<IntegerScaleGemmResult> IntegerScaleGemm(const QuantizedMatrix& activations,
                                                        const IntegerScaledWeight& weight,
                                                        OperandChecks checks) {
  // The integer group partial sums are exactly those of the float-scale GEMM.
  if (auto status = CheckInt32Gemm(activations, weight.weight, checks); !status.ok()) {
    return status;
  }
  const int64_t n_size = weight.weight.rows;
  const int64_t groups = weight.weight.GroupsPerRow();
  if (weight.multipliers.size() != static_cast<size_t>(n_size * groups) ||
      weight.base_scales.size() != static_cast<size_t>(n_size)) {
    return absl::InvalidArgumentError("multipliers or base scales do not match the weight shape");
  }
  // Re-check the overflow bound for these activations (the format may differ from the one the
  // multipliers were derived for).
  int64_t max_mult = 0;
  for (int32_t mult : weight.multipliers) max_mult = std::max<int64_t>(max_mult, mult);
  const int64_t per_unit = activations.cols * MaxAbsCodeMinusZero(activations.format) *
                           MaxAbsCodeMinusZero(weight.weight.format);
  if (max_mult > kInt32Max / per_unit) {
    return absl::OutOfRangeError("these activations could overflow the integer-scale accumulator");
  }
  IntegerScaleGemmResult result;
  result.m = activations.rows;
  result.n = n_size;
  result.accumulators.resize(result.m * result.n);
  result.output.resize(result.m * result.n);
  std::vector<float> base_scales(n_size);  // converted once, not per (token, column)
  for (int64_t n = 0; n < n_size; ++n) base_scales[n] = HalfToFloat(weight.base_scales[n]);
  ForEachGroupDotProducts(
      activations, weight.weight,
      [&](int64_t m, int64_t n_begin, int64_t n_end, const int32_t* sums, int64_t group_stride) {
        const float activation_scale = activations.Scale(m, 0);
        for (int64_t n = n_begin; n < n_end; ++n) {
          int32_t acc = 0;  // cannot overflow: bounded above
          for (int64_t g = 0; g < groups; ++g) {
            acc += sums[g * group_stride + (n - n_begin)] * weight.multipliers[n * groups + g];
          }
          result.accumulators[m * result.n + n] = acc;
          const float scaled = (static_cast<float>(acc) * activation_scale) * base_scales[n];
          result.output[m * result.n + n] = std::ldexp(scaled, -weight.amplifier_bits);
        }
      });
  return result;
}

}  // namespace flatfleet::quant
