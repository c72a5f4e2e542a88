// The combine step of split-K decode: folds the splits' float32 partials (normalized O and
// log2-sum-exp, written by the decode kernel of paged_attention_flash.cuh) into the bf16 output.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/paged_attention_flash.cuh"

namespace flatfleet::cuda::internal::flash {

constexpr int kCombineThreads = 128;
constexpr int kCombineSharedBytes = kDecodeMaxSplits * kDecodeTileRows * sizeof(float);

// out = sum_k w_k O_k with w_k = 2^(lse_k - LSE): the partials of one (sequence, KV head, row
// tile), over the splits that hold positions (the others never ran).
template <int kHeadDim>
__global__ void __launch_bounds__(kCombineThreads) CombineSplitsKernel(const PagedAttentionArgs p) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto* weights = reinterpret_cast<float(*)[kDecodeTileRows]>(smem);  // [kDecodeMaxSplits][16]
  const int y = blockIdx.x, seq = blockIdx.y;
  const int kv_head = y / p.decode_row_tiles, row_tile = y % p.decode_row_tiles;
  const int q_begin = p.query_starts[seq];
  const int num_queries = p.query_starts[seq + 1] - q_begin;
  if (num_queries <= 0 || !IsDecodeSequence(p, num_queries)) return;
  const int rows = num_queries * p.group;
  const int row0 = row_tile * kDecodeTileRows;
  if (row0 >= rows) return;
  const int kv_length = KvLength(p, seq);
  const int splits = DecodeValidSplits(kv_length, DecodeSplitLength(kv_length, p.num_splits));
  // The decode grid is (num_splits, gridDim.x of this grid, num_sequences).
  const int64_t slot0 = (static_cast<int64_t>(seq) * gridDim.x + y) * p.num_splits;

  const int tid = threadIdx.x;
  if (tid < kDecodeTileRows && row0 + tid < rows) {
    const float* lse = p.partial_lse + slot0 * kDecodeTileRows + tid;
    float max_lse = -INFINITY;
    for (int k = 0; k < splits; ++k) max_lse = fmaxf(max_lse, lse[k * kDecodeTileRows]);
    float total = 0.0f;
    for (int k = 0; k < splits; ++k) {
      const float w = max_lse == -INFINITY ? 0.0f : exp2f(lse[k * kDecodeTileRows] - max_lse);
      weights[k][tid] = w;
      total += w;
    }
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int k = 0; k < splits; ++k) weights[k][tid] *= inv;
  }
  __syncthreads();
  for (int e = tid; e < kDecodeTileRows * kHeadDim; e += kCombineThreads) {
    const int row = e / kHeadDim, d = e % kHeadDim;
    const int r = row0 + row;
    if (r >= rows) continue;
    const float* partial = p.partial_out + (slot0 * kDecodeTileRows + row) * kHeadDim + d;
    float sum = 0.0f;
    for (int k = 0; k < splits; ++k) {
      sum =
          fmaf(weights[k][row], partial[static_cast<int64_t>(k) * kDecodeTileRows * kHeadDim], sum);
    }
    p.out[RowOffset(p, q_begin, kv_head, r) + d] = __float2bfloat16_rn(sum);
  }
}

}  // namespace flatfleet::cuda::internal::flash
