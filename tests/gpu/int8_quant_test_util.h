// Shared helpers of the INT8 GPU tests: random activation-like matrices and bitwise comparison.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace flatfleet::cuda::testing {

// Rows of Gaussian values whose magnitudes vary by four orders of magnitude between rows, with a
// few outlier columns (as in LLM activations), so scales and codes cover a wide range.
inline std::vector<float> RandomActivations(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_scale(-2.0f, 2.0f);
  std::uniform_int_distribution<int64_t> column(0, cols - 1);
  std::vector<float> values(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float row_scale = std::pow(10.0f, log_scale(rng));
    for (int64_t c = 0; c < cols; ++c) values[r * cols + c] = row_scale * normal(rng);
    for (int outlier = 0; outlier < 2; ++outlier) values[r * cols + column(rng)] *= 20.0f;
  }
  return values;
}

// Bitwise equality of two arrays (floats compared as their bits), with the first difference.
template <typename T>
::testing::AssertionResult BitwiseEqual(const std::vector<T>& expected,
                                        const std::vector<T>& actual) {
  if (expected.size() != actual.size()) {
    return ::testing::AssertionFailure()
           << "sizes differ: " << expected.size() << " vs " << actual.size();
  }
  int64_t mismatches = 0, first = -1;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::memcmp(&expected[i], &actual[i], sizeof(T)) != 0) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++mismatches;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << mismatches << " of " << expected.size() << " elements differ; first at " << first
         << ": expected " << +expected[first] << ", got " << +actual[first];
}

}  // namespace flatfleet::cuda::testing
