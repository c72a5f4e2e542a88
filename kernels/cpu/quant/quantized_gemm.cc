#include "kernels/cpu/quant/quantized_gemm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

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

// The weights' FP16 group scales as floats, group-major [groups][n] as the fold reads them:
// converted once per call, not once per (token, column, group).
std::vector<float> FloatScalesByGroup(const QuantizedMatrix& weights) {
  const int64_t n_size = weights.rows, groups = weights.GroupsPerRow();
  std::vector<float> scales(weights.scales.size());
  // In blocks of 16 rows, so that the reads stay in L1 and each group's writes are contiguous.
  constexpr int64_t kBlock = 16;
  for (int64_t n_begin = 0; n_begin < n_size; n_begin += kBlock) {
    const int64_t n_end = std::min(n_size, n_begin + kBlock);
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t n = n_begin; n < n_end; ++n) {
        scales[g * n_size + n] = HalfToFloat(weights.scales[n * groups + g]);
      }
    }
  }
  return scales;
}

// The float epilogue, in the documented order (header), of `count` consecutive output elements
// of one row: sums[g * sum_stride + j], scales[g * scale_stride + j]. With AVX2, eight elements
// at a time in one vector: each lane is its own element's chain of fused multiply-adds, the same
// operations as one element at a time, so the same bits.
void FoldFloatScales(const int32_t* sums, int64_t sum_stride, const float* scales,
                     int64_t scale_stride, int64_t groups, int64_t count, float activation_scale,
                     float* out) {
  int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  // vcvtdq2ps rounds to nearest as static_cast<float> does, and vfmadd is the fused std::fma.
  for (; j + 8 <= count; j += 8) {
    __m256 partial = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const __m256 sum = _mm256_cvtepi32_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums + g * sum_stride + j)));
      partial = _mm256_fmadd_ps(sum, _mm256_loadu_ps(scales + g * scale_stride + j), partial);
    }
    _mm256_storeu_ps(out + j, _mm256_mul_ps(partial, _mm256_set1_ps(activation_scale)));
  }
#endif
  for (; j < count; ++j) {
    float partial = 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      // One fused multiply-add (what -march=x86-64-v3 contracted this to anyway), spelled out so
      // the result does not depend on compiler flags and the GPU can repeat it with fmaf.
      partial = std::fma(static_cast<float>(sums[g * sum_stride + j]), scales[g * scale_stride + j],
                         partial);
    }
    out[j] = partial * activation_scale;
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
  const std::vector<float> scales = FloatScalesByGroup(weights);
  ForEachGroupDotProducts(
      activations, weights,
      [&](int64_t m, int64_t n_begin, int64_t n_end, const int32_t* sums, int64_t group_stride) {
        for (int64_t n = n_begin; n < n_end; ++n) {
          for (int64_t g = 0; g < groups; ++g) {
            result.group_accumulators[(m * n_size + n) * groups + g] =
                sums[g * group_stride + (n - n_begin)];
          }
        }
        FoldFloatScales(sums, group_stride, &scales[n_begin], n_size, groups, n_end - n_begin,
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
  const std::vector<float> scales = FloatScalesByGroup(weights);
  ForEachGroupDotProducts(
      activations, weights,
      [&](int64_t m, int64_t n_begin, int64_t n_end, const int32_t* sums, int64_t group_stride) {
        FoldFloatScales(sums, group_stride, &scales[n_begin], n_size, groups, n_end - n_begin,
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
