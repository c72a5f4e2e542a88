// Sampling, one 1024-thread block per row (see sampling.h for the semantics).
//
// Every quantity that decides a token is an integer: logits are compared through order-preserving
// 32-bit keys, probabilities are fixed-point weights round(exp((x - max) / T) * 2^40) summed in
// uint64 (at most 2^23 * 2^40 < 2^64), and the draw is an integer in [0, total). So the
// thresholds, the draw and therefore the token do not depend on summation order or thread
// scheduling: the same row gives the same token in any batch, and the radix-select and bisection
// searches find bit-identical thresholds.
//
// Passes over the row (re-read from L2 after the first):
//   1. argmax (greedy), max and log-sum-exp (logprobs) by block reduction;
//   2. top-k threshold t_k: the largest key t with count(key >= t) >= k;
//   3. top-p threshold t_p: the largest key t >= t_k with mass(key >= t) >= top_p * mass(>= t_k);
//   4. the draw: u = floor(r * total / 2^64) for a 64-bit Philox draw r, then the first index (in
//      index order) whose inclusive prefix of kept weights exceeds u, found by splitting the row
//      into 32 ranges (one per warp), picking the range where the prefix crosses u, and repeating
//      on that range until one warp scans the last <= 32 elements.
#include <curand_kernel.h>

#include <cstdint>

#include "kernels/cuda/sampling_device.cuh"
#include "kernels/cuda/sampling_launch.h"

namespace flatfleet::cuda::internal {
namespace {

using namespace sampling_device;  // NOLINT: the kernels' building blocks

// ---- The draw ----------------------------------------------------------------------------------

// The first index whose inclusive prefix (index order) of kept weights exceeds
// u = floor(random * total / 2^64), total = the kept weights' sum (> 0).
__device__ int64_t DrawIndex(const Row& row, uint32_t threshold, uint64_t random,
                             uint64_t* scratch /* [kWarps] */) {
  __shared__ int64_t found;
  const int warp = threadIdx.x / 32;
  const unsigned lane = threadIdx.x % 32;
  int64_t begin = 0, end = row.n;
  uint64_t residual = 0;
  bool first = true;
  while (true) {
    if (!first && end - begin <= 32) break;
    // Range split into kWarps pieces, one per warp, of a multiple of 4 elements: begin stays a
    // multiple of 4, so a 16-byte aligned row gives 16-byte aligned pieces.
    const int64_t piece = ((end - begin + kWarps - 1) / kWarps + 3) / 4 * 4;
    const int64_t piece_begin = begin + warp * piece;
    const int64_t piece_end = piece_begin + piece < end ? piece_begin + piece : end;
    uint64_t sum = 0;
    const auto add = [&](float v) {
      if (OrderedKey(v) >= threshold) sum += row.Weight(v);
    };
    int64_t scalar_begin = piece_begin;
    if (reinterpret_cast<uintptr_t>(row.x) % 16 == 0 && piece_end > piece_begin) {
      const int64_t quads = (piece_end - piece_begin) / 4;
      const float4* x4 = reinterpret_cast<const float4*>(row.x + piece_begin);
#pragma unroll 2
      for (int64_t j = lane; j < quads; j += 32) {
        const float4 v = x4[j];
        add(v.x);
        add(v.y);
        add(v.z);
        add(v.w);
      }
      scalar_begin = piece_begin + 4 * quads;
    }
    for (int64_t i = scalar_begin + lane; i < piece_end; i += 32) add(row.x[i]);
    sum = WarpSum(sum);
    __syncthreads();  // earlier readers of scratch are done
    if (lane == 0) scratch[warp] = sum;
    __syncthreads();
    // Every thread walks the 32 sums identically.
    if (first) {
      uint64_t total = 0;
      for (int w = 0; w < kWarps; ++w) total += scratch[w];
      residual = __umul64hi(random, total);
      first = false;
    }
    int chosen = kWarps - 1;
    uint64_t before = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (before + scratch[w] > residual) {
        chosen = w;
        break;
      }
      before += scratch[w];
    }
    residual -= before;
    const int64_t new_begin = begin + chosen * piece;
    end = new_begin + piece < end ? new_begin + piece : end;
    begin = new_begin;
  }
  if (warp == 0) {
    const int64_t i = begin + lane;
    uint64_t value = 0;
    if (i < end) {
      const float v = row.x[i];
      if (OrderedKey(v) >= threshold) value = row.Weight(v);
    }
    uint64_t inclusive = value;
    for (int offset = 1; offset < 32; offset *= 2) {
      const uint64_t other = __shfl_up_sync(kFullMask, inclusive, offset);
      if (lane >= static_cast<unsigned>(offset)) inclusive += other;
    }
    const unsigned past = __ballot_sync(kFullMask, inclusive > residual);
    if (lane == 0) found = past != 0u ? begin + __ffs(past) - 1 : begin;
  }
  __syncthreads();
  return found;
}

__device__ uint64_t PhiloxDraw(uint64_t seed, uint64_t step) {
  curandStatePhilox4_32_10_t state;
  curand_init(seed, /*subsequence=*/step, /*offset=*/0, &state);
  const uint4 bits = curand4(&state);
  return (static_cast<uint64_t>(bits.x) << 32) | bits.y;
}

__global__ void __launch_bounds__(kThreads) SampleKernel(SamplingParams p) {
  __shared__ uint64_t scratch[kWarps];
  const int64_t r = blockIdx.x;
  const float* raw = p.logits + r * p.row_stride;
  const int64_t n = p.vocab;
  // The draw reads the row's processed copy when it has one; logprobs stay under the raw row.
  const int32_t processed = p.processed_row != nullptr ? p.processed_row[r] : -1;
  const float* x = processed >= 0 ? p.processed_logits + processed * n : raw;
  const bool want_logprob = p.logprobs != nullptr;
  const RowSummary summary = SummarizeRow(x, n, want_logprob && processed < 0);
  const LogSumExp raw_lse =
      want_logprob && processed >= 0 ? SummarizeRow(raw, n, true).lse : summary.lse;
  const float max_value = x[summary.max_index];

  const float temperature = p.temperature != nullptr ? p.temperature[r] : 0.0f;
  const float inv_temperature = 1.0f / temperature;
  int64_t token = summary.greedy;
  const bool sample = temperature > 0.0f && isfinite(inv_temperature) && isfinite(max_value);
  if (sample) {
    const Row row{x, n, max_value, inv_temperature};
    const int32_t top_k = p.top_k != nullptr ? p.top_k[r] : 0;
    const float top_p = p.top_p != nullptr ? p.top_p[r] : 1.0f;
    const uint32_t max_key = OrderedKey(max_value);
    uint32_t threshold = 0;
    if (top_k > 0 && top_k < n) {
      threshold = p.bisection ? BisectThreshold<false>(row, 0u, max_key, 0u, top_k, scratch)
                              : RadixThreshold<false>(row, 0u, top_k, 0.0f);
    }
    if (top_p < 1.0f) {
      // top_p <= 0 (or NaN): only the most likely token(s), as the CPU's loop keeps one.
      if (!(top_p > 0.0f)) {
        threshold = max_key;
      } else if (p.bisection) {
        const uint64_t kept = SumAtLeast<true>(row, threshold, threshold, scratch);
        const double target = static_cast<double>(top_p) * static_cast<double>(kept);
        threshold = BisectThreshold<true>(row, threshold, max_key, threshold, target, scratch);
      } else {
        threshold = RadixThreshold<true>(row, threshold, 0.0, top_p);
      }
    }
    const uint64_t seed = p.seed != nullptr ? p.seed[r] : 0;
    const uint64_t step = p.step != nullptr ? p.step[r] : 0;
    token = DrawIndex(row, threshold, PhiloxDraw(seed, step), scratch);
  }
  if (threadIdx.x == 0) {
    p.tokens[r] = static_cast<int32_t>(token);
    if (want_logprob) {
      p.logprobs[r] = __fsub_rn(__fsub_rn(raw[token], raw_lse.max), logf(raw_lse.sum));
    }
  }
}

}  // namespace

cudaError_t LaunchSampling(const SamplingParams& p, cudaStream_t stream) {
  if (p.rows <= 0) return cudaSuccess;
  SampleKernel<<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace flatfleet::cuda::internal
