// The fused Kronecker transform + quantizer's shape rules (kronecker_quantize.h), without CUDA
// headers: which factorisations the kernel takes, its shared memory and rows per block. The
// rank memory estimate (worker/quantized/rank_memory_estimate.h) uses them to count, without a
// GPU, the float32 scratch that only the exact path needs.
#pragma once

#include <cstdint>

namespace flatfleet::cuda {
namespace internal {

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

}  // namespace internal

// Whether the fused kernel takes the factorisation (n1, n2): n1 a multiple of 16 up to 128, n2 a
// multiple of 8, a warp's output tiles and the shared memory within the kernel's limits.
inline bool KroneckerQuantizeSupports(int64_t n1, int64_t n2) {
  if (n1 < 16 || n1 > 128 || n1 % 16 != 0 || n2 < 8 || n2 % 8 != 0) return false;
  return internal::KroneckerQuantizeTilesPerWarp(n1, n2) <= internal::kKroneckerQuantizeMaxTiles &&
         internal::KroneckerQuantizeSharedBytes(n1, n2) <=
             internal::kKroneckerQuantizeMaxSharedBytes;
}

// Whether the CUDA backend runs a FlatQuant layer's transform fused (else the exact double kernel
// and its float32 row scratch): the factorisation taken, per-token codes of at most 4 bits (TF32
// suits those), and FLATFLEET_KRONECKER_EXACT=1 not set (`exact_only`).
inline bool KroneckerRunsFused(int64_t n1, int64_t n2, int activation_qmax, bool static_scale,
                               bool exact_only) {
  return !exact_only && !static_scale && activation_qmax <= 7 && KroneckerQuantizeSupports(n1, n2);
}

}  // namespace flatfleet::cuda
