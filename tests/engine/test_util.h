// Helpers shared by the engine tests: seeded random tensors and float64 reference math.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/tensor.h"

namespace flatfleet::engine::testing {

inline Tensor RandomTensor(std::vector<int64_t> shape, std::mt19937& rng, float stddev = 1.0f) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> normal(0.0f, stddev);
  for (float& v : t.span()) v = normal(rng);
  return t;
}

// ||a - b|| / ||b|| in double.
inline double RelativeError(const float* a, const float* b, int64_t n) {
  double diff = 0.0;
  double norm = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

inline double RelativeError(const Tensor& a, const Tensor& b) {
  return RelativeError(a.data(), b.data(), b.size());
}

}  // namespace flatfleet::engine::testing
