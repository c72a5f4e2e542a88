// Independent references for the integer GEMM tests: an int64 naive loop over codes and a float64
// product of the dequantized operands.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant::test_util {

// [m][n][g]: sum over group g of (xcode - xzero) * (wcode - wzero), in int64, read from the raw
// codes / zero points (not through QuantizedMatrix::Centered).
// A matrix of the given shape and format whose codes and scales the test fills in.
inline QuantizedMatrix EmptyQuantizedMatrix(int64_t rows, int64_t cols, const QuantFormat& format) {
  QuantizedMatrix matrix;
  matrix.rows = rows;
  matrix.cols = cols;
  matrix.format = format;
  return matrix;
}

inline std::vector<int64_t> NaiveGroupSums(const QuantizedMatrix& x, const QuantizedMatrix& w) {
  const int64_t groups = w.scales.size() / w.rows, group = w.cols / groups, k_size = w.cols;
  std::vector<int64_t> out(x.rows * w.rows * groups, 0);
  for (int64_t m = 0; m < x.rows; ++m) {
    const int64_t xz = x.zero_points.empty() ? 0 : x.zero_points[m];
    for (int64_t n = 0; n < w.rows; ++n) {
      for (int64_t k = 0; k < k_size; ++k) {
        const int64_t g = k / group;
        const int64_t wz = w.zero_points.empty() ? 0 : w.zero_points[n * groups + g];
        out[(m * w.rows + n) * groups + g] +=
            (int64_t{x.codes[m * k_size + k]} - xz) * (int64_t{w.codes[n * k_size + k]} - wz);
      }
    }
  }
  return out;
}

struct DoubleProduct {
  std::vector<double> value;         // [m][n] sum_k xhat * what
  std::vector<double> absolute_sum;  // [m][n] sum_k |xhat * what|
};

inline DoubleProduct DequantizedProduct(const QuantizedMatrix& x, const QuantizedMatrix& w) {
  const std::vector<float> xd = x.Dequantize(), wd = w.Dequantize();
  DoubleProduct out{std::vector<double>(x.rows * w.rows), std::vector<double>(x.rows * w.rows)};
  for (int64_t m = 0; m < x.rows; ++m) {
    for (int64_t n = 0; n < w.rows; ++n) {
      double sum = 0.0, abs_sum = 0.0;
      for (int64_t k = 0; k < x.cols; ++k) {
        const double term = double{xd[m * x.cols + k]} * wd[n * w.cols + k];
        sum += term;
        abs_sum += std::fabs(term);
      }
      out.value[m * w.rows + n] = sum;
      out.absolute_sum[m * w.rows + n] = abs_sum;
    }
  }
  return out;
}

}  // namespace flatfleet::quant::test_util
