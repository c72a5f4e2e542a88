// The simple paged-attention kernel: one block per (q row, head), float32 throughout, written to
// be obviously right rather than fast. It serves head_dim 8 and 32 (the tiny fixtures) and, with
// force_reference_kernel, any head_dim as the check on the tensor-core kernels.
//
// Each chunk of kThreads positions: thread j computes score j = scale * q . k_j (INT8:
// scale_k * sum q * code, like the CPU reference), the block folds the chunk into a running max
// and sum (online softmax), and thread d accumulates sum_j p_j v_j[d].
#include <cuda_bf16.h>

#include <cmath>

#include "kernels/cuda/paged_attention_common.cuh"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 128;

// Max or sum over the block; every thread gets the result. Ends with a barrier, so `scratch` may
// be reused by the next call.
__device__ float BlockReduce(float value, bool take_max, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = take_max ? fmaxf(value, other) : value + other;
  }
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  value = scratch[0];
  for (int w = 1; w < kThreads / 32; ++w)
    value = take_max ? fmaxf(value, scratch[w]) : value + scratch[w];
  __syncthreads();
  return value;
}

// The sequence that owns q row `row` (the last one starting at or before it), or -1.
__device__ int SequenceOfRow(const PagedAttentionArgs& p, int row) {
  if (p.num_sequences <= 0 || row < p.query_starts[0]) return -1;
  int lo = 0, hi = p.num_sequences - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.query_starts[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return row < p.query_starts[lo + 1] ? lo : -1;
}

template <int kHeadDim, bool kInt8>
__global__ void __launch_bounds__(kThreads)
    PagedAttentionReferenceKernel(const PagedAttentionArgs p) {
  static_assert(kHeadDim <= kThreads, "one thread per output dimension");
  __shared__ float q_values[kHeadDim];
  __shared__ float weights[kThreads];
  __shared__ int64_t slots[kThreads];
  __shared__ float scratch[kThreads / 32];

  const int row = blockIdx.x, head = blockIdx.y, tid = threadIdx.x;
  const int seq = SequenceOfRow(p, row);
  if (seq < 0) return;  // a padding row: left untouched
  const int q_begin = p.query_starts[seq];
  const int num_queries = p.query_starts[seq + 1] - q_begin;
  const int visible =
      min(p.context_lengths[seq] - num_queries + (row - q_begin) + 1, KvLength(p, seq));
  const int64_t element0 = (static_cast<int64_t>(row) * p.num_heads + head) * kHeadDim;
  __nv_bfloat16* out = p.out + element0;
  if (visible <= 0) {  // nothing to attend to (an inconsistent length): zeros, not NaN
    if (tid < kHeadDim) out[tid] = __float2bfloat16_rn(0.0f);
    return;
  }
  if (tid < kHeadDim) q_values[tid] = __bfloat162float(p.q[element0 + tid]);
  __syncthreads();

  const int kv_head = head / p.group;
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_sequence;
  float running_max = -INFINITY, running_sum = 0.0f, acc = 0.0f;
  for (int base = 0; base < visible; base += kThreads) {
    const int j = base + tid;
    float score = -INFINITY;
    if (j < visible) {
      const int64_t slot = SlotOf(p, table, j);
      slots[tid] = slot;
      const int64_t offset = (slot * p.num_kv_heads + kv_head) * kHeadDim;
      float dot = 0.0f;
      if constexpr (kInt8) {
        const int8_t* codes = static_cast<const int8_t*>(p.cache.keys) + offset;
        for (int d = 0; d < kHeadDim; ++d)
          dot = fmaf(q_values[d], static_cast<float>(codes[d]), dot);
        dot *= HalfBitsToFloat(p.cache.key_scales[slot * p.num_kv_heads + kv_head]);
      } else {
        const __nv_bfloat16* keys = static_cast<const __nv_bfloat16*>(p.cache.keys) + offset;
        for (int d = 0; d < kHeadDim; ++d) dot = fmaf(q_values[d], __bfloat162float(keys[d]), dot);
      }
      score = dot * p.scale;
    }
    // Position `base` is visible, so the new max is finite; exp(-inf) = 0 on the first chunk.
    const float new_max = fmaxf(running_max, BlockReduce(score, true, scratch));
    const float rescale = expf(running_max - new_max);
    const float weight = j < visible ? expf(score - new_max) : 0.0f;
    weights[tid] = weight;
    // BlockReduce's barriers also publish weights[] and slots[].
    running_sum = running_sum * rescale + BlockReduce(weight, false, scratch);
    if (tid < kHeadDim) {
      acc *= rescale;
      const int count = min(kThreads, visible - base);
      for (int jj = 0; jj < count; ++jj) {
        const int64_t offset = (slots[jj] * p.num_kv_heads + kv_head) * kHeadDim + tid;
        if constexpr (kInt8) {
          const float value_scale =
              HalfBitsToFloat(p.cache.value_scales[slots[jj] * p.num_kv_heads + kv_head]);
          const int8_t code = static_cast<const int8_t*>(p.cache.values)[offset];
          acc = fmaf(weights[jj] * value_scale, static_cast<float>(code), acc);
        } else {
          const __nv_bfloat16 value = static_cast<const __nv_bfloat16*>(p.cache.values)[offset];
          acc = fmaf(weights[jj], __bfloat162float(value), acc);
        }
      }
    }
    running_max = new_max;
    __syncthreads();  // weights[] and slots[] are rewritten by the next chunk
  }
  if (tid < kHeadDim) out[tid] = __float2bfloat16_rn(acc / running_sum);
}

template <int kHeadDim>
cudaError_t LaunchForHeadDim(const PagedAttentionArgs& p, cudaStream_t stream) {
  const dim3 grid(p.num_q_rows, p.num_heads);
  if (p.cache.int8) {
    PagedAttentionReferenceKernel<kHeadDim, true><<<grid, kThreads, 0, stream>>>(p);
  } else {
    PagedAttentionReferenceKernel<kHeadDim, false><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPagedAttentionReference(const PagedAttentionArgs& p, cudaStream_t stream) {
  if (p.num_q_rows == 0 || p.num_sequences == 0) return cudaSuccess;
  switch (p.head_dim) {
    case 8:
      return LaunchForHeadDim<8>(p, stream);
    case 32:
      return LaunchForHeadDim<32>(p, stream);
    case 64:
      return LaunchForHeadDim<64>(p, stream);
    case 128:
      return LaunchForHeadDim<128>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace flatfleet::cuda::internal
