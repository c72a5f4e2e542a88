#include "kernels/cpu/quant/quantized_gemm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "kernels/cpu/quant/group_dot_products.h"

namespace flatfleet::quant {
namespace {

absl::Status CheckFormatIs(const QuantizedMatrix& matrix, const char* role, int bits,
                           bool must_be_symmetric, bool must_be_per_row) {
  if (matrix.format.bits != bits) {
    return absl::InvalidArgumentError(
        absl::StrCat(role, " must be ", bits, "-bit, got ", matrix.format.bits));
  }
  if (must_be_symmetric && !matrix.format.symmetric) {
    return absl::InvalidArgumentError(absl::StrCat(role, " must be symmetric"));
  }
  if (must_be_per_row && matrix.GroupsPerRow() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(role, " must have one scale per row"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckInt32Gemm(const QuantizedMatrix& activations, const QuantizedMatrix& weights,
                            OperandChecks checks) {
  const bool full = checks == OperandChecks::kFull;
  if (auto status = full ? activations.Validate() : activations.ValidateShape(); !status.ok()) {
    return status;
  }
  if (auto status = full ? weights.Validate() : weights.ValidateShape(); !status.ok()) {
    return status;
  }
  if (activations.cols != weights.cols) {
    return absl::InvalidArgumentError(absl::StrCat("activations have K = ", activations.cols,
                                                   " but weights have K = ", weights.cols));
  }
  if (activations.GroupsPerRow() != 1) {
    return absl::InvalidArgumentError(
        "activations must be quantized per token (one group per row)");
  }
  const int64_t worst = activations.cols * MaxAbsCodeMinusZero(activations.format) *
                        MaxAbsCodeMinusZero(weights.format);
  if (worst > std::numeric_limits<int32_t>::max()) {
    return absl::OutOfRangeError(absl::StrCat(
        "K = ", activations.cols, " could overflow int32 accumulation (worst case ", worst, ")"));
  }
  return absl::OkStatus();
}

namespace {

// The weights' FP16 group scales as floats, [n][groups]: converted once per call, not once per
// (token, column, group).
std::vector<float> FloatScales(const QuantizedMatrix& weights) {
  std::vector<float> scales(weights.scales.size());
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = HalfToFloat(weights.scales[i]);
  return scales;
}

// The float epilogue of one output element, in the documented order (header).
inline float FoldFloatScales(const int32_t* group_sums, const float* scales, int64_t groups,
                             float activation_scale) {
  float partial = 0.0f;
  for (int64_t g = 0; g < groups; ++g) {
    // One fused multiply-add (what -march=x86-64-v3 contracted this to anyway), spelled out so
    // the result does not depend on compiler flags and the GPU can repeat it with fmaf.
    partial = std::fma(static_cast<float>(group_sums[g]), scales[g], partial);
  }
  return partial * activation_scale;
}

// FoldFloatScales for `count` consecutive weight rows (sums and scales `groups` apart), eight at a
// time so that their independent chains of multiply-adds overlap instead of waiting on one
// another's latency; each element's operations and order are FoldFloatScales' exactly.
void FoldFloatScalesRows(const int32_t* sums, const float* scales, int64_t groups, int64_t count,
                         float activation_scale, float* out) {
  constexpr int64_t kLanes = 8;
  int64_t n = 0;
  for (; n + kLanes <= count; n += kLanes) {
    float partial[kLanes] = {};
    for (int64_t g = 0; g < groups; ++g) {
#pragma GCC unroll 8
      for (int64_t j = 0; j < kLanes; ++j) {
        partial[j] = std::fma(static_cast<float>(sums[(n + j) * groups + g]),
                              scales[(n + j) * groups + g], partial[j]);
      }
    }
    for (int64_t j = 0; j < kLanes; ++j) out[n + j] = partial[j] * activation_scale;
  }
  for (; n < count; ++n) {
    out[n] = FoldFloatScales(sums + n * groups, scales + n * groups, groups, activation_scale);
  }
}

}  // namespace

absl::StatusOr<QuantizedGemmResult> QuantizedGemm(const QuantizedMatrix& activations,
                                                  const QuantizedMatrix& weights,
                                                  OperandChecks checks) {
  if (auto status = CheckInt32Gemm(activations, weights, checks); !status.ok()) return status;
  const int64_t m_size = activations.rows, n_size = weights.rows;
  const int64_t groups = weights.GroupsPerRow();
  QuantizedGemmResult result;
  result.m = m_size;
  result.n = n_size;
  result.groups = groups;
  result.group_accumulators.resize(m_size * n_size * groups);
  result.output.resize(m_size * n_size);
  const std::vector<float> scales = FloatScales(weights);
  ForEachGroupDotProducts(
      activations, weights, [&](int64_t m, int64_t n_begin, int64_t n_end, const int32_t* sums) {
        std::copy(sums, sums + (n_end - n_begin) * groups,
                  result.group_accumulators.begin() + (m * n_size + n_begin) * groups);
        FoldFloatScalesRows(sums, &scales[n_begin * groups], groups, n_end - n_begin,
                            activations.Scale(m, 0), &result.output[m * n_size + n_begin]);
      });
  return result;
}

absl::Status QuantizedGemmOutput(const QuantizedMatrix& activations, const QuantizedMatrix& weights,
                                 std::span<float> output, OperandChecks checks) {
  if (auto status = CheckInt32Gemm(activations, weights, checks); !status.ok()) return status;
  const int64_t n_size = weights.rows;
  if (static_cast<int64_t>(output.size()) != activations.rows * n_size) {
    return absl::InvalidArgumentError(absl::StrCat("QuantizedGemmOutput: output has ",
                                                   output.size(), " values for [", activations.rows,
                                                   ", ", n_size, "]"));
  }
  const int64_t groups = weights.GroupsPerRow();
  const std::vector<float> scales = FloatScales(weights);
  ForEachGroupDotProducts(
      activations, weights, [&](int64_t m, int64_t n_begin, int64_t n_end, const int32_t* sums) {
        FoldFloatScalesRows(sums, &scales[n_begin * groups], groups, n_end - n_begin,
                            activations.Scale(m, 0), &output[m * n_size + n_begin]);
      });
  return absl::OkStatus();
}

absl::StatusOr<QuantizedGemmResult> GemmW8A8(const QuantizedMatrix& activations,
                                             const QuantizedMatrix& weights) {
  if (auto s = CheckFormatIs(activations, "activations", 8, true, true); !s.ok()) return s;
  if (auto s = CheckFormatIs(weights, "weights", 8, true, true); !s.ok()) return s;
  return QuantizedGemm(activations, weights);
}

absl::StatusOr<QuantizedGemmResult> GemmW4A8(const QuantizedMatrix& activations,
                                             const QuantizedMatrix& weights) {
  if (auto s = CheckFormatIs(activations, "activations", 8, true, true); !s.ok()) return s;
  if (auto s = CheckFormatIs(weights, "weights", 4, false, false); !s.ok()) return s;
  return QuantizedGemm(activations, weights);
}

absl::StatusOr<QuantizedGemmResult> GemmW4A4(const QuantizedMatrix& activations,
                                             const QuantizedMatrix& weights) {
  if (auto s = CheckFormatIs(activations, "activations", 4, false, true); !s.ok()) return s;
  if (auto s = CheckFormatIs(weights, "weights", 4, false, false); !s.ok()) return s;
  return QuantizedGemm(activations, weights);
}

}  // namespace flatfleet::quant
