// A tiny portable generator for transforms that must be reproducible from a seed in any language
// (the Python quantizer and this library must build the same rotation): SplitMix64.
//   state += 0x9E3779B97F4A7C15; z = state;
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//   return z ^ (z >> 31)
#pragma once

#include <cstdint>

namespace flatfleet::quant {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, 1): the top 53 bits of Next() times 2^-53.
  double NextUniform();
  // +1 or -1 from the top bit of Next() (set bit means -1).
  float NextSign();
  // Standard normal by Box-Muller from two NextUniform() draws, u1 = 1 - first draw (never 0):
  // sqrt(-2 ln u1) * cos(2 pi u2). One value per call (the sine half is discarded).
  double NextGaussian();

 private:
  uint64_t state_;
};

}  // namespace flatfleet::quant
