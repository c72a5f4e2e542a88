// Top logprobs, one 1024-thread block per listed row (see top_logprobs.h for the semantics).
//
// The CPU's order is a total order on (logit, id): larger logit first, then lower id. On the
// logits' order-preserving keys (sampling_device.cuh) it is "larger key, then lower index".
//   * Reference: k passes, each a block argmax over the elements after the previous winner.
//   * Radix select: t = the k-th largest key (sampling's count search); one pass gathers the
//     elements above t (fewer than k) and the ties at t, of which the lowest indices fill the
//     remaining places. Ties beyond kTieSlots (a flat tail: many equal logits at the cut) fall
//     back to one minimum-index pass per remaining place.
#include <cstdint>

#include "kernels/cuda/sampling_device.cuh"
#include "kernels/cuda/top_logprobs_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using namespace sampling_device;  // NOLINT: the kernels' building blocks

constexpr int kTieSlots = 32;

// Whether element (ka, ia) precedes (kb, ib) in the CPU's order.
__device__ __forceinline__ bool Before(uint32_t ka, int64_t ia, uint32_t kb, int64_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// Folds each thread's ArgMax over the block; the result in every thread.
__device__ ArgMax BlockBest(ArgMax best) {
  __shared__ ArgMax warp_best[kWarps];
  for (int offset = 16; offset > 0; offset /= 2) {
    const ArgMax other{__shfl_xor_sync(kFullMask, best.key, offset),
                       __shfl_xor_sync(kFullMask, best.index, offset)};
    best = Better(best, other);
  }
  __syncthreads();  // readers of an earlier call's warp results are done
  if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = best;
  __syncthreads();
  best = warp_best[0];
  for (int w = 1; w < kWarps; ++w) best = Better(best, warp_best[w]);
  return best;
}

// The first element in the CPU's order that comes after (prev_key, prev_index), or the first of
// all when !has_prev. index = n: none.
__device__ ArgMax FirstAfter(const float* x, int64_t n, bool has_prev, uint32_t prev_key,
                             int64_t prev_index) {
  ArgMax best{0u, n};
  ForEachElement(x, n, [&](int64_t i, float v, bool valid) {
    if (!valid) return;
    const uint32_t key = OrderedKey(v);
    if (has_prev && !Before(prev_key, prev_index, key, i)) return;
    best = Better(best, ArgMax{key, i});
  });
  return BlockBest(best);
}

// The lowest index above `after` whose key is t (n: none).
__device__ int64_t FirstTieAfter(const float* x, int64_t n, uint32_t t, int64_t after) {
  ArgMax best{t, n};
  ForEachElement(x, n, [&](int64_t i, float v, bool valid) {
    if (valid && i > after && OrderedKey(v) == t) best = Better(best, ArgMax{t, i});
  });
  return BlockBest(best).index;
}

// Reference: the k first elements in the CPU's order, one pass each.
__device__ __noinline__ void SelectByRepeatedArgmax(const float* x, int64_t n, int k,
                                                    int64_t* chosen) {
  bool has_prev = false;
  uint32_t prev_key = 0;
  int64_t prev_index = 0;
  for (int s = 0; s < k; ++s) {
    const ArgMax best = FirstAfter(x, n, has_prev, prev_key, prev_index);
    if (threadIdx.x == 0) chosen[s] = best.index;
    has_prev = true;
    prev_key = best.key;
    prev_index = best.index;
  }
}

// Fast path: radix select of the k-th largest key, then one gather pass.
__device__ __noinline__ void SelectByRadix(const float* x, int64_t n, int k, int64_t* chosen) {
  __shared__ int64_t above_index[kMaxTopLogprobs];
  __shared__ int64_t tie_index[kTieSlots];
  __shared__ unsigned above_count;
  __shared__ unsigned tie_count;
  const Row row{x, n, 0.0f, 0.0f};  // counts only: the weights are not used
  // The largest t with count(key >= t) >= k: fewer than k keys lie above it.
  const uint32_t t = RadixThreshold<false>(row, 0u, static_cast<double>(k), 0.0f);
  if (threadIdx.x == 0) {
    above_count = 0;
    tie_count = 0;
  }
  __syncthreads();
  const unsigned lane = threadIdx.x % 32;
  ForEachElement(x, n, [&](int64_t i, float v, bool valid) {
    const uint32_t key = OrderedKey(v);
    if (valid && key > t) {
      const unsigned slot = atomicAdd(&above_count, 1u);
      if (slot < kMaxTopLogprobs) above_index[slot] = i;  // always: fewer than k <= 20
    }
    // Ties are counted per warp: a flat row may hold a great many.
    const bool tie = valid && key == t;
    const unsigned ties = __ballot_sync(kFullMask, tie);
    if (ties != 0u) {
      const int leader = __ffs(ties) - 1;
      unsigned base = 0;
      if (lane == static_cast<unsigned>(leader)) base = atomicAdd(&tie_count, __popc(ties));
      base = __shfl_sync(kFullMask, base, leader);
      const unsigned slot = base + __popc(ties & ((1u << lane) - 1u));
      if (tie && slot < kTieSlots) tie_index[slot] = i;
    }
  });
  __syncthreads();
  const int above = static_cast<int>(above_count);
  const int need = k - above;  // ties to take, lowest indices first (tie_count >= need)
  if (tie_count > static_cast<unsigned>(kTieSlots)) {
    // Not all ties were kept: find the `need` lowest indices one pass each.
    int64_t last = -1;
    for (int s = 0; s < need; ++s) {
      last = FirstTieAfter(x, n, t, last);
      if (threadIdx.x == 0) tie_index[s] = last;
    }
  } else if (threadIdx.x == 0) {
    for (unsigned a = 1; a < tie_count; ++a) {  // insertion sort by index
      const int64_t value = tie_index[a];
      unsigned b = a;
      for (; b > 0 && tie_index[b - 1] > value; --b) tie_index[b] = tie_index[b - 1];
      tie_index[b] = value;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int a = 1; a < above; ++a) {  // insertion sort in the CPU's order
      const int64_t value = above_index[a];
      const uint32_t key = OrderedKey(x[value]);
      int b = a;
      for (; b > 0 && Before(key, value, OrderedKey(x[above_index[b - 1]]), above_index[b - 1]);
           --b) {
        above_index[b] = above_index[b - 1];
      }
      above_index[b] = value;
    }
    for (int s = 0; s < above; ++s) chosen[s] = above_index[s];
    for (int s = 0; s < need; ++s) chosen[above + s] = tie_index[s];
  }
}

__global__ void __launch_bounds__(kThreads) TopLogprobsKernel(TopLogprobs p) {
  __shared__ int64_t chosen[kMaxTopLogprobs];
  const int64_t j = blockIdx.x;
  const int32_t source = p.source_row[j];
  const float* x = p.logits + static_cast<int64_t>(source) * p.logits_row_stride;
  const int64_t n = p.vocab;
  const RowSummary summary = SummarizeRow(x, n, true);
  const float lse_max = summary.lse.max;
  const float log_sum = logf(summary.lse.sum);
  // The sampler's formula (sampling.cu): the same bits for the chosen token.
  const auto logprob = [&](int64_t i) { return __fsub_rn(__fsub_rn(x[i], lse_max), log_sum); };
  int count = p.count[j];
  count = count < 0 ? 0 : (count > kMaxTopLogprobs ? kMaxTopLogprobs : count);
  const int k = static_cast<int64_t>(count) < n ? count : static_cast<int>(n);
  if (k > 0) {
    if (p.algorithm == TopLogprobsAlgorithm::kRepeatedArgmax) {
      SelectByRepeatedArgmax(x, n, k, chosen);
    } else {
      SelectByRadix(x, n, k, chosen);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int32_t token = p.tokens[source];
    p.chosen_logprob[j] = token >= 0 && token < n ? logprob(token) : __int_as_float(0x7fc00000);
    for (int s = 0; s < kMaxTopLogprobs; ++s) {
      p.top_tokens[j * kMaxTopLogprobs + s] = s < k ? static_cast<int32_t>(chosen[s]) : -1;
      p.top_logprobs[j * kMaxTopLogprobs + s] = s < k ? logprob(chosen[s]) : -INFINITY;
    }
  }
}

}  // namespace

cudaError_t LaunchTopLogprobs(const TopLogprobs& args, cudaStream_t stream) {
  if (args.rows <= 0) return cudaSuccess;
  TopLogprobsKernel<<<static_cast<unsigned>(args.rows), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
