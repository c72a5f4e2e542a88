// Causal attention over the paged KV cache (kernels/cuda/kv_cache_layer.h) for a batch that may
// mix prefill chunks and single-token decodes, matching kernels/cpu/attention.h CausalAttention:
// sequence s owns q rows [query_starts[s], query_starts[s + 1]), which are the LAST of its
// context_lengths[s] cached positions, so its query i sees positions
// <= context_lengths[s] - num_queries + i. q head h reads KV head h / (num_heads / num_kv_heads).
// Scores, softmax (online, stable) and the P.V sums are float32; the output is rounded to bf16.
//
// Kernels (paged_attention_*.cu):
//   * head_dim 64/128: tensor cores (mma.sync m16n8k16 bf16). The q rows of one KV head's group
//     are packed together (row = query * group + head in group), so every K/V element a CTA loads
//     serves all query heads of its group. Sequences with at most 16 packed rows per tile (single
//     decodes, short chunks) go to a split-K "flash-decoding" kernel plus a combine kernel; longer
//     ones to a FlashAttention-2 style kernel with causal tile skipping. Both in one call.
//   * head_dim 8/32 (and any head_dim with force_reference_kernel): a plain SIMT kernel, one block
//     per (q row, head).
// CUDA graphs: max_query_length and max_context_length may be upper bounds of the device lengths;
// the grid depends only on the host fields, and blocks beyond a sequence's length exit at once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/kv_cache_layer.h"

namespace flatfleet::cuda {

struct PagedAttentionParams {
  const __nv_bfloat16* q = nullptr;       // [num_q_rows, num_heads, head_dim], 16-byte aligned
  __nv_bfloat16* out = nullptr;           // [num_q_rows, num_heads, head_dim], 16-byte aligned
  KvCacheLayer cache;                     // pools 16-byte aligned
  const int32_t* block_tables = nullptr;  // [num_sequences, max_blocks_per_sequence], device
  int64_t max_blocks_per_sequence = 0;
  // [num_sequences + 1], device, non-decreasing. Rows not owned by any sequence are not written.
  const int32_t* query_starts = nullptr;
  // [num_sequences], device: cached positions including this step's new ones (>= num_queries).
  const int32_t* context_lengths = nullptr;
  int64_t num_sequences = 0, num_q_rows = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t max_query_length = 0;    // host-known upper bound of any sequence's query count
  int64_t max_context_length = 0;  // host-known upper bound of context_lengths
  float scale = 0.0f;              // softmax scale, usually 1 / sqrt(head_dim)
  void* workspace = nullptr;       // split-K partials, 16-byte aligned; see below
  size_t workspace_bytes = 0;
  // Testing and tuning: run the SIMT kernel for every head_dim; force the decode split count
  // (0 picks it from the shape; at most 64).
  bool force_reference_kernel = false;
  int64_t decode_num_splits = 0;
};

// Bytes `workspace` must hold for these params (0 when none is needed). Depends only on the host
// fields, so a buffer sized for a graph's upper bounds serves every replay.
size_t PagedAttentionWorkspaceBytes(const PagedAttentionParams& params);

// Validates (InvalidArgument naming the field) and enqueues on `stream` (no allocation, no
// synchronisation; capturable). num_sequences == 0 or num_q_rows == 0 is a no-op.
absl::Status PagedAttention(const PagedAttentionParams& params, cudaStream_t stream);

}  // namespace flatfleet::cuda
