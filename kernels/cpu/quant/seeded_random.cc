#include "kernels/cpu/quant/seeded_random.h"

#include <cmath>
#include <numbers>

namespace flatfleet::quant {

uint64_t SplitMix64::Next() {
  state_ += 0x9E3779B97F4A7C15ull;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SplitMix64::NextUniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

float SplitMix64::NextSign() { return (Next() >> 63) ? -1.0f : 1.0f; }

double SplitMix64::NextGaussian() {
  const double u1 = 1.0 - NextUniform();
  const double u2 = NextUniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

}  // namespace flatfleet::quant
