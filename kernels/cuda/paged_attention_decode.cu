// Split-K ("flash-decoding") paged attention for decode-sized sequences: the tensor-core kernel of
// paged_attention_flash.cuh with one m16 row tile (all query heads of a KV head, for up to
// 16 / group queries) and four warps splitting every 64-position tile by columns, then a combine
// kernel that folds the splits' partials with their log-sum-exp weights.
#include "kernels/cuda/paged_attention_combine.cuh"
#include "kernels/cuda/paged_attention_flash_launch.cuh"

namespace flatfleet::cuda::internal {
namespace {

template <int kHeadDim, bool kInt8>
cudaError_t Launch(const PagedAttentionArgs& p, cudaStream_t stream) {
  const dim3 grid(p.num_splits, p.num_kv_heads * p.decode_row_tiles, p.num_sequences);
  cudaError_t error =
      flash::LaunchFlash<flash::DecodeConfig<kHeadDim, kInt8>, /*kDecode=*/true>(p, grid, stream);
  if (error != cudaSuccess || p.num_splits == 1) return error;
  const dim3 combine_grid(p.num_kv_heads * p.decode_row_tiles, p.num_sequences);
  flash::CombineSplitsKernel<kHeadDim>
      <<<combine_grid, flash::kCombineThreads, flash::kCombineSharedBytes, stream>>>(p);
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
