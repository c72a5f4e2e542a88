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

// Output tiles (16 x 8) of one warp for one row, where a block computes `m_tiles` of the n1 / 16
// row tiles (0: all of them): those row tiles share the 16 warps.
inline int64_t KroneckerQuantizeTilesPerWarp(int64_t n1, int64_t n2, int64_t m_tiles = 0) {
  if (m_tiles == 0) m_tiles = n1 / 16;
  const int64_t warps_per_m_tile = kKroneckerQuantizeWarps / m_tiles;
  return (n2 / 8 + warps_per_m_tile - 1) / warps_per_m_tile;
}

// The split path: a token row over a cluster of `cluster` CTAs, rank r computing the 16-row tiles
// [r m / cluster, (r + 1) m / cluster) of the m = n1 / 16 (at most this many).
inline int64_t KroneckerQuantizeSplitTiles(int64_t n1, int64_t cluster) {
  return (n1 / 16 + cluster - 1) / cluster;
}

// Where stage 2 reads P2: from L2 (__ldg per use), or from shared memory as TF32 bits, staged
// (cp.async) at the kernel's start beside P1 where the whole of it fits there, or else over P1
// once stage 1 is done with it, in chunks of k-steps (8 rows of P2) where the whole does not fit.
enum class KroneckerP2Source { kL2 = 0, kBesideP1 = 1, kOverP1 = 2 };
inline constexpr int64_t kKroneckerQuantizeMaxP2Chunks = 4;  // more: L2 (too many waits)

// A staged P2 row's floats: n2 padded to 8 mod 32, so that a B fragment's loads (rows t, t + 4 and
// columns g of a 16 x 8 tile's k-step) hit 32 distinct banks.
inline int64_t KroneckerQuantizeP2Ld(int64_t n2) { return n2 + (40 - n2 % 32) % 32; }

// A block's shared memory (all of it dynamic: with static shared memory beside it the 227 KB
// opt-in would fail), in floats from its start: `rows` n1 x (n2 + 4) views of a row (a split CTA:
// the one row's), P1's columns as n1 x (16 tiles + 8) (all n1, or a split CTA's tiles), P2's
// staged chunk, then one float per warp and row for the rows' maxima and, split, the block's max
// and finiteness that its peers read.
struct KroneckerQuantizeLayout {
  int64_t left = 0;    // P1's columns
  int64_t p2 = 0;      // P2's chunk, p2_chunk_steps x 8 rows of KroneckerQuantizeP2Ld floats
  int64_t maxima = 0;  // the warps' maxima
  int64_t bytes = 0;   // the whole
  KroneckerP2Source p2_source = KroneckerP2Source::kL2;
  int64_t p2_chunk_steps = 0;  // 0 for kL2; n2 / 8 for kBesideP1
};

// The layout for blocks of `rows` token rows (cluster 1) or for a `cluster`-CTA split (rows 1),
// P2 staged where `stage_p2` and it fits: beside P1 if the whole fits; else, without a cluster
// (a split CTA, at decode, would wait for it), over P1 in the fewest chunks (at most 4).
inline KroneckerQuantizeLayout KroneckerQuantizeSharedLayout(int64_t n1, int64_t n2, int64_t rows,
                                                             int64_t cluster, bool stage_p2) {
  const int64_t left_tiles = cluster > 1 ? KroneckerQuantizeSplitTiles(n1, cluster) : n1 / 16;
  const int64_t left_floats = n1 * (16 * left_tiles + 8);
  const int64_t maxima_floats = rows * kKroneckerQuantizeWarps + (cluster > 1 ? 2 : 0);
  KroneckerQuantizeLayout layout;
  layout.left = rows * n1 * (n2 + 4);
  layout.p2 = layout.left + left_floats;
  int64_t region = left_floats;  // P1, and P2 where staged beside or over it
  const int64_t budget =
      kKroneckerQuantizeMaxSharedBytes / 4 - layout.left - left_floats - maxima_floats;
  const int64_t steps = n2 / 8, step_floats = 8 * KroneckerQuantizeP2Ld(n2);
  if (stage_p2 && steps * step_floats <= budget) {
    layout.p2_source = KroneckerP2Source::kBesideP1;
    layout.p2_chunk_steps = steps;
    region += steps * step_floats;
  } else if (stage_p2 && cluster <= 1) {
    const int64_t fit = std::min(steps, (budget + left_floats) / step_floats);
    const int64_t chunks = fit > 0 ? (steps + fit - 1) / fit : 0;
    if (chunks >= 1 && chunks <= kKroneckerQuantizeMaxP2Chunks) {
      layout.p2_source = KroneckerP2Source::kOverP1;
      layout.p2_chunk_steps = (steps + chunks - 1) / chunks;
      layout.p2 = layout.left;
      region = std::max(left_floats, layout.p2_chunk_steps * step_floats);
    }
  }
  layout.maxima = layout.left + region;
  layout.bytes = (layout.maxima + maxima_floats) * 4;
  return layout;
}

// The least shared memory of blocks of `rows` rows (P2 read from L2).
inline int64_t KroneckerQuantizeSharedBytes(int64_t n1, int64_t n2, int64_t rows = 1) {
  return KroneckerQuantizeSharedLayout(n1, n2, rows, 1, /*stage_p2=*/false).bytes;
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
