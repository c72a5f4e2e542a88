// Float32 dot product that the compiler can vectorise: independent partial sums in 16 lanes
// (strict IEEE reductions with one accumulator stay scalar and latency-bound).
#pragma once

#include <cmath>
#include <cstdint>

namespace flatfleet::kernels::cpu {

inline float Dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma GCC unroll 16
    for (int j = 0; j < kLanes; ++j) lanes[j] = std::fma(a[i + j], b[i + j], lanes[j]);
  }
  for (int j = 0; i < n; ++i, ++j) lanes[j] = std::fma(a[i], b[i], lanes[j]);
  // Pairwise tree over the lanes.
  for (int width = kLanes / 2; width > 0; width /= 2) {
#pragma GCC unroll 8
    for (int j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  }
  return lanes[0];
}

}  // namespace flatfleet::kernels::cpu
