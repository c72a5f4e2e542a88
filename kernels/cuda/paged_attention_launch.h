// Raw launchers of the paged-attention kernels (paged_attention_*.cu) and the constants the host
// wrapper (paged_attention.cc) shares with them. They check nothing: callers go through
// PagedAttention (paged_attention.h), which validates the arguments first.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/kv_cache_layer.h"

namespace flatfleet::cuda {
struct PagedAttentionParams;
}  // namespace flatfleet::cuda

namespace flatfleet::cuda::internal {

// Positions per K/V tile of the tensor-core kernels.
inline constexpr int kAttentionTileN = 64;
// Packed q rows (query x head of a KV group) per decode CTA: one m16 MMA tile.
inline constexpr int kDecodeTileRows = 16;
// Split-K: a decode split covers at least this many positions (a multiple of kAttentionTileN)...
inline constexpr int kDecodeMinSplitPositions = 256;
// ...the host picks at most this many splits...
inline constexpr int kDecodeMaxSplits = 64;
// ...aiming at about this many decode CTAs in the grid (several waves on an H100/H200).
inline constexpr int64_t kDecodeTargetCtas = 1024;

struct PagedAttentionArgs {
  const __nv_bfloat16* q = nullptr;
  __nv_bfloat16* out = nullptr;
  KvCacheLayer cache;
  const int32_t* block_tables = nullptr;
  int64_t max_blocks_per_sequence = 0;
  const int32_t* query_starts = nullptr;
  const int32_t* context_lengths = nullptr;
  int32_t num_sequences = 0, num_q_rows = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int32_t block_size = 0;
  int32_t group = 1;        // num_heads / num_kv_heads
  int32_t max_context = 0;  // max_blocks_per_sequence * block_size: device lengths clamp here
  float scale = 0.0f;
  // Tensor-core path only:
  int32_t decode_row_tiles = 1;   // m16 tiles per KV head in the decode grid: ceil(group / 16)
  int32_t num_splits = 1;         // decode split-K count; 1 writes the output directly
  int32_t prefill_row_tiles = 0;  // prefill grid z: ceil(max_query_length * group / BM); 0: none
  float* partial_out = nullptr;   // [decode CTAs][kDecodeTileRows][head_dim], when num_splits > 1
  float* partial_lse = nullptr;   // [decode CTAs][kDecodeTileRows] (log2 domain)
};

// The launch arguments of validated params (paged_attention.cc): head group, the tensor-core
// path's decode row tiles, split count and prefill grid, and the workspace carved into partials.
PagedAttentionArgs ResolvePagedAttentionArgs(const PagedAttentionParams& params);

// SIMT reference kernel: every row, any supported head_dim.
cudaError_t LaunchPagedAttentionReference(const PagedAttentionArgs& args, cudaStream_t stream);
// Tensor-core kernels (head_dim 64/128): the split-K decode kernel (+ combine when
// num_splits > 1) for sequences with num_queries * group <= decode_row_tiles * 16 ...
cudaError_t LaunchPagedAttentionDecode(const PagedAttentionArgs& args, cudaStream_t stream);
// ... and the prefill kernel for the others (launched when prefill_row_tiles > 0).
cudaError_t LaunchPagedAttentionPrefill(const PagedAttentionArgs& args, cudaStream_t stream);
// Packed q rows per prefill CTA (the host sizes the grid with it).
inline constexpr int kPrefillTileRows = 128;

}  // namespace flatfleet::cuda::internal
