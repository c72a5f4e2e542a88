// The fused Kronecker transform + quantizer's shape rules (kronecker_quantize.h), without CUDA
// headers: which factorisations the kernel takes, its shared memory, rows per block and CTAs per
// row. The rank memory estimate (worker/quantized/rank_memory_estimate.h) uses them to count,
// without a GPU, the float32 scratch that only the exact path needs.
#pragma once

#include <algorithm>
#include <cstdint>

namespace flatfleet::cuda {
namespace internal {

inline constexpr int kKroneckerQuantizeWarps = 16;
inline constexpr int kKroneckerQuantizeMaxTiles = 16;  // 16 x 8 output tiles per warp
inline constexpr int kKroneckerQuantizeMaxSharedBytes = 232448;
inline constexpr int kKroneckerQuantizeMaxCluster = 8;  // the portable cluster size

// Shared memory (all of it dynamic: with static shared memory beside it the 227 KB opt-in would
// fail): `rows` n1 x (n2 + 4) views of a row and P1 as n1 x (n1 + 8), float32, then one float per
// warp and row for the rows' maxima.
inline int64_t KroneckerQuantizeSharedBytes(int64_t n1, int64_t n2, int64_t rows = 1) {
  return (rows * n1 * (n2 + 4) + n1 * (n1 + 8) + rows * kKroneckerQuantizeWarps) * 4;
}

// Output tiles (16 x 8) of one warp for one row, where a block computes `m_tiles` of the n1 / 16
// row tiles (0: all of them): those row tiles share the 16 warps.
inline int64_t KroneckerQuantizeTilesPerWarp(int64_t n1, int64_t n2, int64_t m_tiles = 0) {
  if (m_tiles == 0) m_tiles = n1 / 16;
  const int64_t warps_per_m_tile = kKroneckerQuantizeWarps / m_tiles;
  return (n2 / 8 + warps_per_m_tile - 1) / warps_per_m_tile;
}

// Whether blocks of `rows` token rows fit the accumulators (16 tiles a warp) and shared memory.
inline bool KroneckerQuantizeRowsFit(int64_t n1, int64_t n2, int64_t rows) {
  return KroneckerQuantizeTilesPerWarp(n1, n2) * rows <= kKroneckerQuantizeMaxTiles &&
         KroneckerQuantizeSharedBytes(n1, n2, rows) <= kKroneckerQuantizeMaxSharedBytes;
}

// Token rows per block: 4, 2 or 1, as the accumulators and shared memory allow.
inline int KroneckerQuantizeRowsPerBlock(int64_t n1, int64_t n2) {
  for (int rows : {4, 2}) {
    if (KroneckerQuantizeRowsFit(n1, n2, rows)) return rows;
  }
  return 1;
}

// The split path: a token row over a cluster of `cluster` CTAs, rank r computing the 16-row tiles
// [r m / cluster, (r + 1) m / cluster) of the m = n1 / 16 (at most this many).
inline int64_t KroneckerQuantizeSplitTiles(int64_t n1, int64_t cluster) {
  return (n1 / 16 + cluster - 1) / cluster;
}

// A split CTA's shared memory: the whole row's n1 x (n2 + 4) view (stage 1 reads every row of U),
// its tiles' columns of P1 as n1 x (16 tiles + 8), the warps' maxima, and the block's max and
// finiteness that its peers read.
inline int64_t KroneckerQuantizeSplitSharedBytes(int64_t n1, int64_t n2, int64_t cluster) {
  return (n1 * (n2 + 4) + n1 * (16 * KroneckerQuantizeSplitTiles(n1, cluster) + 8) +
          kKroneckerQuantizeWarps + 2) *
         4;
}

// CTAs per token row. At decode one block per row leaves most SMs idle (m = 1 runs on one), so
// while rows x CTAs stays within the GPU's `sms`, each row takes up to `most_cluster` (8) CTAs, at
// most one per 16-row tile; then the fewest that leave the busiest CTA as many tiles (7 tiles: 7
// CTAs; over 6, 4 CTAs of 2 tiles rather than 6 of 1 or 2). 1 (no cluster, the blocks of 1-4 rows)
// from sms / 2 rows on, where the rows alone fill the SMs. (The launcher also lowers the size while
// the device could not run all the rows' clusters at once.)
inline int KroneckerQuantizeClusterSize(int64_t n1, int64_t rows, int64_t sms,
                                        int64_t most_cluster = kKroneckerQuantizeMaxCluster) {
  const int64_t m_tiles = n1 / 16;
  const int64_t most = std::min({most_cluster, m_tiles, sms / std::max<int64_t>(rows, 1)});
  if (most < 2) return 1;
  const int64_t tiles = (m_tiles + most - 1) / most;
  return static_cast<int>((m_tiles + tiles - 1) / tiles);
}

}  // namespace internal

// Whether the fused kernel takes the factorisation (n1, n2): n1 a multiple of 16 up to 128, n2 a
// multiple of 8, a warp's output tiles and the shared memory within the kernel's limits. (The split
// path then fits too: a CTA's tiles, its share of P1 and so its shared memory are fewer.)
inline bool KroneckerQuantizeSupports(int64_t n1, int64_t n2) {
  if (n1 < 16 || n1 > 128 || n1 % 16 != 0 || n2 < 8 || n2 % 8 != 0) return false;
  return internal::KroneckerQuantizeRowsFit(n1, n2, 1);
}

// Whether the CUDA backend runs a FlatQuant layer's transform fused (else the exact double kernel
// and its float32 row scratch): the factorisation taken, per-token codes of at most 4 bits (TF32
// suits those), and FLATFLEET_KRONECKER_EXACT=1 not set (`exact_only`).
inline bool KroneckerRunsFused(int64_t n1, int64_t n2, int activation_qmax, bool static_scale,
                               bool exact_only) {
  return !exact_only && !static_scale && activation_qmax <= 7 && KroneckerQuantizeSupports(n1, n2);
}

}  // namespace flatfleet::cuda
