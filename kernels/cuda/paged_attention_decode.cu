// Split-K ("flash-decoding") paged attention for decode-sized sequences: the tensor-core kernel of
// paged_attention_flash.cuh with one m16 row tile (all query heads of a KV head, for up to
// 16 / group queries) and four warps splitting every 64-position tile by columns, then a combine
// kernel that folds the splits' partials with their log-sum-exp weights.
#include "kernels/cuda/paged_attention_flash.cuh"

namespace flatfleet::cuda::internal {
namespace {

// Three CTAs per SM: 74 KB of shared memory each (two 64-position K/V stages of 34 KB + Q).
template <int kHeadDim, bool kInt8>
using DecodeConfig = flash::FlashConfig<kHeadDim, kInt8, /*kWarpsM=*/1, /*kWarpsN=*/4,
                                        /*kStages=*/2, /*kMinBlocks=*/3>;

constexpr int kCombineThreads = 128;

// out = sum_k w_k O_k with w_k = 2^(lse_k - LSE): the partials of one (sequence, KV head, row
// tile), over the splits that hold positions (the others never ran).
template <int kHeadDim>
__global__ void __launch_bounds__(kCombineThreads) CombineSplitsKernel(const PagedAttentionArgs p) {
  __shared__ float weights[kDecodeMaxSplits][kDecodeTileRows];
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
    p.out[flash::RowOffset(p, q_begin, kv_head, r) + d] = __float2bfloat16_rn(sum);
  }
}

template <int kHeadDim, bool kInt8>
cudaError_t Launch(const PagedAttentionArgs& p, cudaStream_t stream) {
  const dim3 grid(p.num_splits, p.num_kv_heads * p.decode_row_tiles, p.num_sequences);
  cudaError_t error =
      flash::LaunchFlash<DecodeConfig<kHeadDim, kInt8>, /*kDecode=*/true>(p, grid, stream);
  if (error != cudaSuccess || p.num_splits == 1) return error;
  const dim3 combine_grid(p.num_kv_heads * p.decode_row_tiles, p.num_sequences);
  CombineSplitsKernel<kHeadDim><<<combine_grid, kCombineThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPagedAttentionDecode(const PagedAttentionArgs& p, cudaStream_t stream) {
  if (p.num_q_rows == 0 || p.num_sequences == 0) return cudaSuccess;
  switch (p.head_dim) {
    case 64:
      return p.cache.int8 ? Launch<64, true>(p, stream) : Launch<64, false>(p, stream);
    case 128:
      return p.cache.int8 ? Launch<128, true>(p, stream) : Launch<128, false>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace flatfleet::cuda::internal
