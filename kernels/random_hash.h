// The counter-based hash behind seeded random weights, identical on the host and in CUDA device
// code (random_fill): SplitMix64 of seed + i * golden ratio, mapped to a uniform in [-1, 1).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FF_HOST_DEVICE inline
#endif

namespace flatfleet::kernels {

FF_HOST_DEVICE uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// 24 random bits as a float in [-1, 1) (exactly representable, so host and device agree).
FF_HOST_DEVICE float HashToSymmetricUniform(uint64_t seed, int64_t i) {
  const uint64_t bits = SplitMix64(seed ^ (static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull));
  return static_cast<float>(static_cast<int64_t>(bits >> 40) - (int64_t{1} << 23)) *
         (1.0f / static_cast<float>(int64_t{1} << 23));
}

}  // namespace flatfleet::kernels

#undef FF_HOST_DEVICE
