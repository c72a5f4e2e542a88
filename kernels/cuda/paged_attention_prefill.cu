// FlashAttention-2 style paged attention for prefill-sized sequences: the tensor-core kernel of
// paged_attention_flash.cuh with eight warps of 16 packed rows (128 rows per CTA: 128 / group
// queries of every head of one KV head) over 64-position K/V tiles, causal tiles skipped.
#include "kernels/cuda/paged_attention_flash_launch.cuh"

namespace flatfleet::cuda::internal {
namespace {

template <int kHeadDim, bool kInt8>
cudaError_t Launch(const PagedAttentionArgs& p, cudaStream_t stream) {
  static_assert(flash::PrefillConfig<kHeadDim, kInt8>::kRows == kPrefillTileRows);
  const dim3 grid(p.num_kv_heads, p.num_sequences, p.prefill_row_tiles);
  return flash::LaunchFlash<flash::PrefillConfig<kHeadDim, kInt8>, /*kDecode=*/false>(p, grid,
                                                                                      stream);
}

}  // namespace

cudaError_t LaunchPagedAttentionPrefill(const PagedAttentionArgs& p, cudaStream_t stream) {
  if (p.num_q_rows == 0 || p.num_sequences == 0 || p.prefill_row_tiles == 0) return cudaSuccess;
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
