// Shared helpers of the pointwise, norm, embedding and sampling GPU tests: a fresh random seed per
// test (FLATFLEET_TEST_SEED=<n> replays one; the seed is printed with any failure), bfloat16 bit
// conversions on the host, and the size of a bfloat16 ulp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/quant/test_random.h"

namespace flatfleet::cuda::testing {

// The project's one seed source (FLATFLEET_TEST_SEED, else a fresh one).
using quant::test_util::FreshSeed;

// Seeded generator whose seed is attached to every failure of the test that owns it.
class SeededRng {
 public:
  SeededRng()
      : seed_(FreshSeed()),
        rng_(seed_),
        trace_(__FILE__, __LINE__, "seed " + std::to_string(seed_)) {}
  uint64_t seed() const { return seed_; }
  std::mt19937_64& rng() { return rng_; }

  // Normal(0, stddev) floats, never exactly zero.
  std::vector<float> Gaussian(size_t count, float stddev = 1.0f) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> values(count);
    for (float& v : values) {
      do {
        v = dist(rng_);
      } while (v == 0.0f);
    }
    return values;
  }
  int64_t UniformInt(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  float UniformFloat(float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(rng_);
  }

 private:
  uint64_t seed_;
  std::mt19937_64 rng_;
  ::testing::ScopedTrace trace_;
};

inline uint32_t FloatBits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}
inline float BitsToFloat(uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

// Round to nearest even (NaN -> a quiet NaN of the same sign).
inline uint16_t FloatToBf16(float value) {
  const uint32_t bits = FloatBits(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}
inline float Bf16ToFloat(uint16_t bits) { return BitsToFloat(static_cast<uint32_t>(bits) << 16); }

inline std::vector<uint16_t> ToBf16(const std::vector<float>& values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = FloatToBf16(values[i]);
  return out;
}
inline std::vector<float> Widen(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = Bf16ToFloat(bits[i]);
  return out;
}

// The spacing of bfloat16 values (8 significant bits) at |v|: 2^(exponent - 7); subnormal
// spacing below the smallest normal.
inline double Bf16Ulp(double v) {
  const double a = std::max(std::fabs(v), 0x1p-126);
  return std::ldexp(1.0, std::ilogb(a) - 7);
}

// A poison byte pattern for outputs: 0xFF bytes are NaN as float32 and as bfloat16.
template <typename T>
std::vector<T> Poisoned(size_t count) {
  std::vector<T> values(count);
  std::memset(values.data(), 0xff, count * sizeof(T));
  return values;
}

}  // namespace flatfleet::cuda::testing
