#include "kernels/cpu/quant/dense_matrix.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "kernels/cpu/quant/seeded_random.h"

namespace flatfleet::quant {

std::vector<double> RandomOrthogonal(int64_t size, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<double> q(size * size);
  for (double& v : q) v = rng.NextGaussian();
  for (int64_t j = 0; j < size; ++j) {
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t prev = 0; prev < j; ++prev) {
        double dot = 0.0;
        for (int64_t i = 0; i < size; ++i) dot += q[i * size + prev] * q[i * size + j];
        for (int64_t i = 0; i < size; ++i) q[i * size + j] -= dot * q[i * size + prev];
      }
    }
    double norm = 0.0;
    for (int64_t i = 0; i < size; ++i) norm += q[i * size + j] * q[i * size + j];
    norm = std::sqrt(norm);
    for (int64_t i = 0; i < size; ++i) q[i * size + j] /= norm;
  }
  return q;
}

absl::StatusOr<std::vector<double>> InvertMatrix(const std::vector<double>& matrix, int64_t size) {
  std::vector<double> a = matrix;
  std::vector<double> inverse(size * size, 0.0);
  for (int64_t i = 0; i < size; ++i) inverse[i * size + i] = 1.0;
  double max_entry = 0.0;
  for (double v : a) max_entry = std::max(max_entry, std::fabs(v));
  for (int64_t col = 0; col < size; ++col) {
    int64_t pivot = col;
    for (int64_t r = col + 1; r < size; ++r) {
      if (std::fabs(a[r * size + col]) > std::fabs(a[pivot * size + col])) pivot = r;
    }
    if (std::fabs(a[pivot * size + col]) <= 1e-12 * max_entry) {
      return absl::InvalidArgumentError("matrix is singular");
    }
    for (int64_t c = 0; c < size; ++c) {
      std::swap(a[col * size + c], a[pivot * size + c]);
      std::swap(inverse[col * size + c], inverse[pivot * size + c]);
    }
    const double inv_pivot = 1.0 / a[col * size + col];
    for (int64_t c = 0; c < size; ++c) {
      a[col * size + c] *= inv_pivot;
      inverse[col * size + c] *= inv_pivot;
    }
    for (int64_t r = 0; r < size; ++r) {
      if (r == col) continue;
      const double factor = a[r * size + col];
      if (factor == 0.0) continue;
      for (int64_t c = 0; c < size; ++c) {
        a[r * size + c] -= factor * a[col * size + c];
        inverse[r * size + c] -= factor * inverse[col * size + c];
      }
    }
  }
  return inverse;
}

std::vector<double> Transpose(const std::vector<double>& matrix, int64_t size) {
  std::vector<double> out(size * size);
  for (int64_t i = 0; i < size; ++i)
    for (int64_t j = 0; j < size; ++j) out[j * size + i] = matrix[i * size + j];
  return out;
}

}  // namespace flatfleet::quant
