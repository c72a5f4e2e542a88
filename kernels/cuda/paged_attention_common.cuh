// Device helpers shared by the paged-attention kernels: where a position lives in the paged
// cache, how long a sequence's cache is, and how the decode kernel splits it (the split-K
// partition is computed on the device from the actual context length, so a grid sized for a
// graph's upper bounds is right for every replay).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/paged_attention_launch.h"

// Loop unrolling hints, spelled so that the host build of these headers (the warp emulator's
// tests) does not warn about unknown pragmas.
#ifdef __CUDACC__
#define FF_UNROLL _Pragma("unroll")
#define FF_NO_UNROLL _Pragma("unroll 1")
#else
#define FF_UNROLL
#define FF_NO_UNROLL
#endif

namespace flatfleet::cuda::internal {

__device__ __forceinline__ float HalfBitsToFloat(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

// Physical slot of position `pos` of the sequence whose block-table row is `table`.
__device__ __forceinline__ int64_t SlotOf(const PagedAttentionArgs& p, const int32_t* table,
                                          int pos) {
  const int64_t block = __ldg(table + pos / p.block_size);
  return block * p.block_size + pos % p.block_size;
}

// Cached positions a kernel may read for sequence `seq`: the device context length, clamped to
// what the block table can address (a corrupt length then cannot read outside the table).
__device__ __forceinline__ int KvLength(const PagedAttentionArgs& p, int seq) {
  return min(max(p.context_lengths[seq], 0), p.max_context);
}

// Tensor-core path: a sequence goes to the decode kernel when its packed rows fit its tiles.
__device__ __forceinline__ bool IsDecodeSequence(const PagedAttentionArgs& p, int num_queries) {
  return num_queries * p.group <= p.decode_row_tiles * kDecodeTileRows;
}

// Positions per decode split: an equal share of the context, rounded up to whole K/V tiles, and
// at least kDecodeMinSplitPositions (so short contexts use few splits; the rest exit at once).
__device__ __forceinline__ int DecodeSplitLength(int kv_length, int num_splits) {
  const int share = (kv_length + num_splits - 1) / num_splits;
  const int rounded = (share + kAttentionTileN - 1) / kAttentionTileN * kAttentionTileN;
  return max(kDecodeMinSplitPositions, rounded);
}

// Splits that hold positions (split 0 always counts: it writes the empty result of a length-0
// sequence).
__device__ __forceinline__ int DecodeValidSplits(int kv_length, int split_length) {
  return max(1, (kv_length + split_length - 1) / split_length);
}

}  // namespace flatfleet::cuda::internal
