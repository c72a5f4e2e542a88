// Raw launcher of the fused Kronecker transform + quantizer (kronecker_quantize.h validates).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flatfleet::cuda::internal {

inline constexpr int kKroneckerQuantizeWarps = 16;
inline constexpr int kKroneckerQuantizeMaxTiles = 16;  // 16 x 8 output tiles per warp
inline constexpr int kKroneckerQuantizeMaxSharedBytes = 232448;

// Shared memory (all of it dynamic: with static shared memory beside it the 227 KB opt-in would
// fail): `rows` n1 x (n2 + 4) views of a row and P1 as n1 x (n1 + 8), float32, then one float per
// warp and row for the rows' maxima.
inline int64_t KroneckerQuantizeSharedBytes(int64_t n1, int64_t n2, int64_t rows = 1) {
  return (rows * n1 * (n2 + 4) + n1 * (n1 + 8) + rows * kKroneckerQuantizeWarps) * 4;
}

// Output tiles (16 x 8) of one warp for one row: n1 / 16 row tiles share the 16 warps.
inline int64_t KroneckerQuantizeTilesPerWarp(int64_t n1, int64_t n2) {
  const int64_t warps_per_m_tile = kKroneckerQuantizeWarps / (n1 / 16);
  return (n2 / 8 + warps_per_m_tile - 1) / warps_per_m_tile;
}

// Token rows per block: 4, 2 or 1, as the accumulators (16 tiles a warp) and shared memory allow.
inline int KroneckerQuantizeRowsPerBlock(int64_t n1, int64_t n2) {
  const int64_t tiles = KroneckerQuantizeTilesPerWarp(n1, n2);
  for (int rows : {4, 2}) {
    if (tiles * rows <= kKroneckerQuantizeMaxTiles &&
        KroneckerQuantizeSharedBytes(n1, n2, rows) <= kKroneckerQuantizeMaxSharedBytes) {
      return rows;
    }
  }
  return 1;
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
  int rows_per_block = 1;  // 1, 2 or 4 (KroneckerQuantizeRowsPerBlock)
};

cudaError_t LaunchKroneckerQuantize(const KroneckerQuantizeParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda::internal
