// Raw launcher of the fused Kronecker transform + quantizer (kronecker_quantize.h validates).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

inline constexpr int kKroneckerQuantizeWarps = 16;
inline constexpr int kKroneckerQuantizeMaxTiles = 16;  // 16 x 8 output tiles per warp
inline constexpr int kKroneckerQuantizeMaxSharedBytes = 232448;

// Shared memory (all of it dynamic: with static shared memory beside it the 227 KB opt-in would
// fail): the n1 x (n2 + 4) view of the row and P1 as n1 x (n1 + 8), float32, then one float per
// warp for the row's max.
inline int64_t KroneckerQuantizeSharedBytes(int64_t n1, int64_t n2) {
  return (n1 * (n2 + 4) + n1 * (n1 + 8) + kKroneckerQuantizeWarps) * 4;
}

struct KroneckerQuantizeParams {
  const void* x = nullptr;
  bool x_is_bf16 = true;
  int64_t rows = 0;
  int64_t x_stride = 0;
  int n1 = 0;
  int n2 = 0;
  const float* divisors = nullptr;
  const float* p1 = nullptr;
  const float* p2 = nullptr;
  float clip_ratio = 1.0f;
  int qmax = 7;
  int8_t* codes = nullptr;
  int64_t codes_stride = 0;
  uint16_t* scales = nullptr;
};

cudaError_t LaunchKroneckerQuantize(const KroneckerQuantizeParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
