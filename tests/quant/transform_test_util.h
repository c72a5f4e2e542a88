// Helpers for the transform tests, in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace flatfleet::quant::test_util {

// max |(Q^T Q - I)_ij| for an n x n row-major Q.
inline double MaxOrthogonalityError(const std::vector<double>& q, int64_t n) {
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0.0;
      for (int64_t r = 0; r < n; ++r) dot += q[r * n + i] * q[r * n + j];
      worst = std::max(worst, std::fabs(dot - (i == j ? 1.0 : 0.0)));
    }
  }
  return worst;
}

// X [m, k] times W [n, k] transposed.
inline std::vector<double> MatMulTransposed(const std::vector<float>& x,
                                            const std::vector<float>& w, int64_t m, int64_t n,
                                            int64_t k) {
  std::vector<double> y(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < k; ++c) y[i * n + j] += double{x[i * k + c]} * w[j * k + c];
  return y;
}

// ||x_i|| * ||w_j||: the natural scale of output (i, j) for tolerances.
inline std::vector<double> RowNormProducts(const std::vector<float>& x, const std::vector<float>& w,
                                           int64_t m, int64_t n, int64_t k) {
  auto norm = [k](const std::vector<float>& v, int64_t row) {
    double sum = 0.0;
    for (int64_t c = 0; c < k; ++c) sum += double{v[row * k + c]} * v[row * k + c];
    return std::sqrt(sum);
  };
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) out[i * n + j] = norm(x, i) * norm(w, j);
  return out;
}

// Mean over rows of max|x| / rms(x): large when one channel dominates.
inline double MeanMaxAbsOverRms(const std::vector<float>& x, int64_t rows, int64_t cols) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    double max_abs = 0.0, sum_sq = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      max_abs = std::max(max_abs, std::fabs(double{x[r * cols + c]}));
      sum_sq += double{x[r * cols + c]} * x[r * cols + c];
    }
    total += max_abs / std::sqrt(sum_sq / cols);
  }
  return total / rows;
}

}  // namespace flatfleet::quant::test_util
