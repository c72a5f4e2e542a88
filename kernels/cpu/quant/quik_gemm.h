// QUIK-style mixed-precision GEMM: a few outlier input channels stay in FP16, the rest are
// quantized (typically INT4 weights x INT4 activations).
//
//   Y[m, n] = base[m, n] + outlier[m, n]
//   base    = QuantizedGemm(quantize_per_token(X[:, rest]), W[:, rest] quantized)
//   (quantized_gemm.h) outlier = sum over outlier channels k, in ascending k:  fp16(X[m, k]) *
//   fp16(W[n, k]),
//             accumulated in float32 (each product of two FP16 values is exact in float32)
// The final addition is one float32 add, base first. "rest" keeps the original column order.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

// The `count` input channels with the largest max |X[:, k]| over calibration rows, ascending.
std::vector<int64_t> SelectOutlierChannels(std::span<const float> calibration, int64_t rows,
                                           int64_t cols, int64_t count);

struct QuikWeight {
  int64_t n = 0;
  int64_t k = 0;
  std::vector<int64_t> outlier_channels;  // ascending
  std::vector<uint16_t> outlier_weights;  // FP16, [n][outlier_channels.size()]
  QuantizedMatrix base;                   // W without the outlier columns, [n][k - outliers]
};

absl::StatusOr<QuikWeight> QuantizeQuikWeight(std::span<const float> weight, int64_t n, int64_t k,
                                              std::vector<int64_t> outlier_channels,
                                              const QuantFormat& base_format);

struct QuikGemmResult {
  QuantizedGemmResult base;           // integer part (and its epilogue)
  std::vector<float> outlier_output;  // [m][n]
  std::vector<float> output;          // [m][n] = base.output + outlier_output
  QuantizedMatrix base_activations;   // what the activations were quantized to
};

// Quantizes the non-outlier activation columns per token with `activation_format`, then runs
// the mixed GEMM.
absl::StatusOr<QuikGemmResult> QuikGemm(std::span<const float> activations, int64_t m,
                                        const QuikWeight& weight,
                                        const QuantFormat& activation_format,
                                        OperandChecks checks = OperandChecks::kFull);

}  // namespace flatfleet::quant
