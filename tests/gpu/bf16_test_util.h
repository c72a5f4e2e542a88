// Shared helpers of the bf16 GPU tests (GEMMs, MoE): host bf16 rounding, poisoned device
// buffers, and a tolerance check that reports the worst element.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"

namespace flatfleet::cuda::testing {

// float -> bf16 bits, round to nearest even (NaN stays a quiet NaN).
inline uint16_t Bf16Bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if (std::isnan(value)) return 0x7fc0;
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
inline float Bf16ToFloat(uint16_t bits) {
  const uint32_t widened = uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &widened, 4);
  return value;
}
inline float RoundToBf16(float value) { return Bf16ToFloat(Bf16Bits(value)); }

inline std::vector<uint16_t> ToBf16Bits(const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = Bf16Bits(values[i]);
  return bits;
}
inline std::vector<float> Bf16BitsToFloats(const std::vector<uint16_t>& bits) {
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) values[i] = Bf16ToFloat(bits[i]);
  return values;
}
// Rounds every value to bf16 in place (the operands every bf16 kernel actually sees).
inline void RoundAllToBf16(std::vector<float>& values) {
  for (float& v : values) v = RoundToBf16(v);
}

inline const __nv_bfloat16* AsBf16(const DeviceBuffer<uint16_t>& buffer) {
  return reinterpret_cast<const __nv_bfloat16*>(buffer.get());
}
inline __nv_bfloat16* AsBf16(DeviceBuffer<uint16_t>& buffer) {
  return reinterpret_cast<__nv_bfloat16*>(buffer.get());
}

// Fills a device buffer with 0xFF bytes: NaN as bf16 or float32, -1 as int32, so any element a
// kernel forgets to write shows.
template <typename T>
void Poison(DeviceBuffer<T>& buffer, size_t count) {
  ASSERT_EQ(cudaMemset(buffer.get(), 0xff, count * sizeof(T)), cudaSuccess);
}

// |actual - expected| <= relative * |expected| + absolute[i] for every element (NaN fails).
inline ::testing::AssertionResult AllClose(const std::vector<float>& expected,
                                           const std::vector<float>& actual,
                                           const std::vector<float>& absolute, double relative) {
  if (expected.size() != actual.size() || expected.size() != absolute.size()) {
    return ::testing::AssertionFailure() << "sizes differ: " << expected.size() << ", "
                                         << actual.size() << ", " << absolute.size();
  }
  int64_t failures = 0, worst = -1;
  double worst_ratio = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    const double allowed = relative * std::fabs(expected[i]) + absolute[i];
    const double ratio = std::isnan(error) ? INFINITY : error / std::max(allowed, 1e-30);
    if (!(error <= allowed)) ++failures;
    if (worst < 0 || ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = static_cast<int64_t>(i);
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << failures << " of " << expected.size() << " elements out of tolerance; worst at "
         << worst << ": expected " << expected[worst] << ", got " << actual[worst]
         << ", allowed error " << relative * std::fabs(expected[worst]) + absolute[worst];
}

}  // namespace flatfleet::cuda::testing
