#include "kernels/cpu/quant/quik_gemm.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "kernels/cpu/quant/rtn_quantizer.h"

namespace flatfleet::quant {
namespace {

// Splits row-major [rows, cols] into the non-outlier columns (original order) and the outlier
// columns rounded to FP16.
void SplitColumns(std::span<const float> values, int64_t rows, int64_t cols,
                  const std::vector<int64_t>& outliers, std::vector<float>& rest,
                  std::vector<uint16_t>& outlier_half) {
  std::vector<bool> is_outlier(cols, false);
  for (int64_t c : outliers) is_outlier[c] = true;
  rest.clear();
  outlier_half.clear();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (!is_outlier[c]) rest.push_back(values[r * cols + c]);
    }
    for (int64_t c : outliers) outlier_half.push_back(FloatToHalf(values[r * cols + c]));
  }
}

}  // namespace

std::vector<int64_t> SelectOutlierChannels(std::span<const float> calibration, int64_t rows,
                                           int64_t cols, int64_t count) {
  std::vector<float> max_abs(cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      max_abs[c] = std::max(max_abs[c], std::fabs(calibration[r * cols + c]));
    }
  }
  std::vector<int64_t> order(cols);
  std::iota(order.begin(), order.end(), 0);
  count = std::clamp<int64_t>(count, 0, cols);
  // Ties broken by the lower channel index so the choice is deterministic.
  std::partial_sort(order.begin(), order.begin() + count, order.end(), [&](int64_t a, int64_t b) {
    return max_abs[a] != max_abs[b] ? max_abs[a] > max_abs[b] : a < b;
  });
  order.resize(count);
  std::sort(order.begin(), order.end());
  return order;
}

absl::StatusOr<QuikWeight> QuantizeQuikWeight(std::span<const float> weight, int64_t n, int64_t k,
                                              std::vector<int64_t> outlier_channels,
                                              const QuantFormat& base_format) {
  if (static_cast<int64_t>(weight.size()) != n * k) {
    return absl::InvalidArgumentError("weight size does not match [n, k]");
  }
  std::sort(outlier_channels.begin(), outlier_channels.end());
  if (std::adjacent_find(outlier_channels.begin(), outlier_channels.end()) !=
      outlier_channels.end()) {
    return absl::InvalidArgumentError("outlier channels must be distinct");
  }
  for (int64_t c : outlier_channels) {
    if (c < 0 || c >= k) {
      return absl::InvalidArgumentError(
          absl::StrCat("outlier channel ", c, " is outside [0, ", k, ")"));
    }
  }
  QuikWeight out;
  out.n = n;
  out.k = k;
  out.outlier_channels = std::move(outlier_channels);
  std::vector<float> rest;
  SplitColumns(weight, n, k, out.outlier_channels, rest, out.outlier_weights);
  auto base =
      QuantizeRtn(rest, n, k - static_cast<int64_t>(out.outlier_channels.size()), base_format);
  if (!base.ok()) return base.status();
  out.base = *std::move(base);
  return out;
}

absl::StatusOr<QuikGemmResult> QuikGemm(std::span<const float> activations, int64_t m,
                                        const QuikWeight& weight,
                                        const QuantFormat& activation_format,
                                        OperandChecks checks) {
  if (static_cast<int64_t>(activations.size()) != m * weight.k) {
    return absl::InvalidArgumentError("activation size does not match [m, k]");
  }
  if (activation_format.group_size != 0) {
    return absl::InvalidArgumentError("QUIK activations are quantized per token (group_size 0)");
  }
  const int64_t outliers = static_cast<int64_t>(weight.outlier_channels.size());
  std::vector<float> rest;
  std::vector<uint16_t> outlier_x;
  SplitColumns(activations, m, weight.k, weight.outlier_channels, rest, outlier_x);
  QuikGemmResult result;
  auto base_x = QuantizeRtn(rest, m, weight.k - outliers, activation_format);
  if (!base_x.ok()) return base_x.status();
  result.base_activations = *std::move(base_x);
  auto base = QuantizedGemm(result.base_activations, weight.base, checks);
  if (!base.ok()) return base.status();
  result.base = *std::move(base);

  result.outlier_output.resize(m * weight.n);
  result.output.resize(m * weight.n);
  // Rows in parallel; each element's sum keeps its order, so the result does not depend on the
  // thread count.
  ThreadPool::Default().ParallelFor(
      m,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          for (int64_t j = 0; j < weight.n; ++j) {
            float sum = 0.0f;
            for (int64_t o = 0; o < outliers; ++o) {
              // One fused multiply-add, spelled out as the integer GEMMs' epilogue is, so the
              // result does not depend on compiler flags (x86-64-v3 contracted it anyway).
              sum = std::fma(HalfToFloat(outlier_x[i * outliers + o]),
                             HalfToFloat(weight.outlier_weights[j * outliers + o]), sum);
            }
            result.outlier_output[i * weight.n + j] = sum;
            result.output[i * weight.n + j] = result.base.output[i * weight.n + j] + sum;
          }
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, weight.n * outliers)));
  return result;
}

}  // namespace flatfleet::quant
