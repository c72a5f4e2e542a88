#include "kernels/cpu/quant/quantized_gemm.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

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

absl::Status CheckInt32Gemm(const QuantizedMatrix& activations, const QuantizedMatrix& weights) {
  if (auto status = activations.Validate(); !status.ok()) return status;
  if (auto status = weights.Validate(); !status.ok()) return status;
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

absl::StatusOr<QuantizedGemmResult> QuantizedGemm(const QuantizedMatrix& activations,
                                                  const QuantizedMatrix& weights) {
  if (auto status = CheckInt32Gemm(activations, weights); !status.ok()) return status;
  const int64_t m_size = activations.rows, n_size = weights.rows, k_size = weights.cols;
  const int64_t group_size = weights.GroupSize();
  const int64_t groups = weights.GroupsPerRow();
  QuantizedGemmResult result;
  result.m = m_size;
  result.n = n_size;
  result.groups = groups;
  result.group_accumulators.resize(m_size * n_size * groups);
  result.output.resize(m_size * n_size);

  // Centre the operands once: code - zero.
  std::vector<int32_t> x(m_size * k_size), w(n_size * k_size);
  for (int64_t m = 0; m < m_size; ++m)
    for (int64_t k = 0; k < k_size; ++k) x[m * k_size + k] = activations.Centered(m, k);
  for (int64_t n = 0; n < n_size; ++n)
    for (int64_t k = 0; k < k_size; ++k) w[n * k_size + k] = weights.Centered(n, k);

  for (int64_t m = 0; m < m_size; ++m) {
    for (int64_t n = 0; n < n_size; ++n) {
      float partial = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t acc = 0;  // cannot overflow: checked by CheckInt32Gemm
        for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) {
          acc += x[m * k_size + k] * w[n * k_size + k];
        }
        result.group_accumulators[(m * n_size + n) * groups + g] = acc;
        // One fused multiply-add (what -march=x86-64-v3 contracted this to anyway), spelled out so
        // the result does not depend on compiler flags and the GPU can repeat it with fmaf.
        partial = std::fma(static_cast<float>(acc), weights.Scale(n, g), partial);
      }
      result.output[m * n_size + n] = partial * activations.Scale(m, 0);
    }
  }
  return result;
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
