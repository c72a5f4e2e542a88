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

#include "kernels/cuda/sampling_launch.h"

namespace flatfleet::cuda::internal {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kFixedOne = 1099511627776.0f;  // 2^40: the top token's weight
// expf(-28.5) * 2^40 = 0.46 rounds to 0: weights with a smaller exponent are 0 without an expf.
constexpr float kMinExponent = -28.5f;
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;

// Order-preserving key: a < b as floats <=> Key(a) < Key(b); -0 and +0 share a key; NaN is 0,
// below every number (key(-inf) = 0x007fffff).
__device__ __forceinline__ uint32_t OrderedKey(float v) {
  if (isnan(v)) return 0u;
  uint32_t bits = __float_as_uint(v);
  if ((bits << 1) == 0u) bits = 0u;
  return (bits & 0x80000000u) != 0u ? ~bits : (bits | 0x80000000u);
}

// The row being sampled, with what pass 1 found.
struct Row {
  const float* x;
  int64_t n;
  float max_value;
  float inv_temperature;

  // Fixed-point probability weight of a logit (0 for NaN, -inf and the far tail).
  __device__ __forceinline__ uint64_t Weight(float v) const {
    const float exponent = __fmul_rn(__fsub_rn(v, max_value), inv_temperature);
    if (!(exponent >= kMinExponent)) return 0;
    return __float2ull_rn(__fmul_rn(expf(exponent), kFixedOne));
  }
};

template <typename T>
__device__ __forceinline__ T WarpSum(T value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullMask, value, offset);
  return value;
}

// Block-wide integer sum, result in every thread.
template <typename T>
__device__ T BlockSum(T value, T* scratch /* [kWarps] shared */) {
  value = WarpSum(value);
  __syncthreads();  // earlier readers of scratch are done
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  return WarpSum(scratch[threadIdx.x % 32]);
}

// Visits every element of x[0, n): each thread calls f(i, v, valid) for its share, the same number
// of times in every thread of the block (valid = false: padding past the end, v = 0), so f may
// contain warp-collective operations.
//
// Which thread sees element i, and at which position of its sequence of calls, depends only on i
// and n, never on the row's address: quad q = i / 4 (elements [4q, 4q + 4), the last one maybe
// partial) belongs to thread q % kThreads, whose calls run quad by quad in increasing q, elements
// in index order within a quad. So a float reduction folded in call order (the log-sum-exp) gives
// bit-identical results for the same row at any batch position and row stride. Only the loads
// differ: one 16-byte load per full quad when x is 16-byte aligned, four scalar loads otherwise;
// kBatch quads in flight per thread.
constexpr int kBatch = 2;
template <typename F>
__device__ __forceinline__ void ForEachElement(const float* x, int64_t n, F&& f) {
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const int64_t full_quads = n / 4;
  const int64_t quads = (n + 3) / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  for (int64_t base = 0; base < quads; base += kBatch * kThreads) {
    float4 v[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int64_t q = base + b * kThreads + threadIdx.x;
      if (aligned && q < full_quads) {
        v[b] = x4[q];
      } else {
        const int64_t i = 4 * q;
        v[b] = make_float4(i < n ? x[i] : 0.0f, i + 1 < n ? x[i + 1] : 0.0f,
                           i + 2 < n ? x[i + 2] : 0.0f, i + 3 < n ? x[i + 3] : 0.0f);
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int64_t i = 4 * (base + b * kThreads + threadIdx.x);
      f(i, v[b].x, i < n);
      f(i + 1, v[b].y, i + 1 < n);
      f(i + 2, v[b].z, i + 2 < n);
      f(i + 3, v[b].w, i + 3 < n);
    }
  }
}

// ---- Pass 1: argmax and log-sum-exp ----------------------------------------------------------

struct ArgMax {
  uint32_t key;
  int64_t index;  // n when the thread saw nothing
};
__device__ __forceinline__ ArgMax Better(ArgMax a, ArgMax b) {
  return (a.key > b.key || (a.key == b.key && a.index < b.index)) ? a : b;
}

// Running log-sum-exp: sum = sum of exp(x - max) over the values seen (max = -inf: none). Its
// value depends on the order of the values, which ForEachElement and the fixed reduction tree
// of SummarizeRow fix. Explicitly rounded operations: no contraction into FMAs that could differ
// between two inlined copies.
struct LogSumExp {
  float max;
  float sum;
};
__device__ __forceinline__ LogSumExp Combine(LogSumExp a, LogSumExp b) {
  if (a.max == -INFINITY) return b;
  if (b.max == -INFINITY) return a;
  const float m = fmaxf(a.max, b.max);
  return {m, __fadd_rn(__fmul_rn(a.sum, expf(__fsub_rn(a.max, m))),
                       __fmul_rn(b.sum, expf(__fsub_rn(b.max, m))))};
}
__device__ __forceinline__ LogSumExp Add(LogSumExp a, float v) {
  if (isnan(v) || v == -INFINITY) return a;
  if (v > a.max) return {v, __fadd_rn(__fmul_rn(a.sum, expf(__fsub_rn(a.max, v))), 1.0f)};
  return {a.max, __fadd_rn(a.sum, expf(__fsub_rn(v, a.max)))};
}

struct RowSummary {
  int64_t greedy;     // engine::Argmax's answer
  int64_t max_index;  // the first largest non-NaN logit (0 when all are NaN)
  LogSumExp lse;
};

__device__ RowSummary SummarizeRow(const float* x, int64_t n, bool want_lse) {
  __shared__ ArgMax warp_best[kWarps];
  __shared__ LogSumExp warp_lse[kWarps];
  ArgMax best{0u, n};
  LogSumExp lse{-INFINITY, 0.0f};
  ForEachElement(x, n, [&](int64_t i, float v, bool valid) {
    if (!valid) return;
    best = Better(best, ArgMax{OrderedKey(v), i});
    if (want_lse) lse = Add(lse, v);
  });
  for (int offset = 16; offset > 0; offset /= 2) {
    const ArgMax other{__shfl_xor_sync(kFullMask, best.key, offset),
                       __shfl_xor_sync(kFullMask, best.index, offset)};
    best = Better(best, other);
    const LogSumExp other_lse{__shfl_xor_sync(kFullMask, lse.max, offset),
                              __shfl_xor_sync(kFullMask, lse.sum, offset)};
    lse = Combine(lse, other_lse);
  }
  if (threadIdx.x % 32 == 0) {
    warp_best[threadIdx.x / 32] = best;
    warp_lse[threadIdx.x / 32] = lse;
  }
  __syncthreads();
  // Every thread folds the 32 warp results in the same order: identical values everywhere.
  best = warp_best[0];
  lse = warp_lse[0];
  for (int w = 1; w < kWarps; ++w) {
    best = Better(best, warp_best[w]);
    lse = Combine(lse, warp_lse[w]);
  }
  // engine::Argmax is std::max_element: a NaN at index 0 is never replaced.
  const int64_t max_index = best.index < n ? best.index : 0;
  return {isnan(x[0]) ? 0 : max_index, max_index, lse};
}

// ---- Threshold searches ------------------------------------------------------------------------

// What a search accumulates over the elements with key >= t: their count or their weight.
// `floor_key` excludes the elements below an earlier threshold (top-p runs inside top-k).
template <bool kMass>
__device__ __forceinline__ uint64_t Contribution(const Row& row, float v, uint32_t key,
                                                 uint32_t floor_key) {
  if (key < floor_key) return 0;
  return kMass ? row.Weight(v) : 1;
}

// sum over key >= t of Contribution (one pass).
template <bool kMass>
__device__ uint64_t SumAtLeast(const Row& row, uint32_t t, uint32_t floor_key, uint64_t* scratch) {
  uint64_t sum = 0;
  ForEachElement(row.x, row.n, [&](int64_t, float v, bool valid) {
    const uint32_t key = OrderedKey(v);
    if (valid && key >= t) sum += Contribution<kMass>(row, v, key, floor_key);
  });
  return BlockSum(sum, scratch);
}

// Reference search: the largest t in [lo, hi] with SumAtLeast(t) >= target, given that lo
// qualifies. Bisection on the key, one pass per step (at most 32).
template <bool kMass>
__device__ uint32_t BisectThreshold(const Row& row, uint32_t lo, uint32_t hi, uint32_t floor_key,
                                    double target, uint64_t* scratch) {
  while (lo < hi) {
    const uint32_t mid = lo + static_cast<uint32_t>((static_cast<uint64_t>(hi) - lo + 1) / 2);
    const uint64_t sum = SumAtLeast<kMass>(row, mid, floor_key, scratch);
    if (static_cast<double>(sum) >= target) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// hist[bin] += value for the active lanes of a warp (all 32 lanes call it). Lanes that share a
// bin are summed first, so a row whose keys crowd into a few bins (the top digit of similar
// logits, or many -inf) does not serialise on one shared-memory address.
template <typename T>
__device__ __forceinline__ void WarpHistogramAdd(T* hist, uint32_t bin, T value, bool active) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned peers = __match_any_sync(kFullMask, active ? bin : 0xffffffffu);
  const bool shared_bin = active && __popc(peers) > 1;
  if (active && !shared_bin) atomicAdd(&hist[bin], value);
  unsigned leaders =
      __ballot_sync(kFullMask, shared_bin && lane == static_cast<unsigned>(__ffs(peers) - 1));
  while (leaders != 0u) {
    const int leader = __ffs(leaders) - 1;
    const unsigned group = __shfl_sync(kFullMask, peers, leader);
    const T part = WarpSum(((group >> lane) & 1u) != 0u ? value : T(0));
    if (lane == static_cast<unsigned>(leader)) atomicAdd(&hist[bin], part);
    leaders &= leaders - 1u;
  }
}

// Fast search: the largest key t with SumAtLeast(t) >= target by 8-bit radix select, four
// passes. `target_fraction` > 0 means the target is that fraction of the first level's total
// (top-p: the total is the top-k set's mass, known only after that histogram); else `target`.
template <bool kMass>
__device__ uint32_t RadixThreshold(const Row& row, uint32_t floor_key, double target,
                                   float target_fraction) {
  using T = unsigned long long;
  __shared__ T hist[kRadixBins];
  __shared__ uint32_t chosen_bin;
  __shared__ T chosen_above;
  __shared__ double shared_target;
  const unsigned lane = threadIdx.x % 32;
  uint32_t prefix = 0;  // the decided high digits, in place
  T above = 0;          // sum over the elements whose decided digits are larger
  for (int level = 0; level < 32 / kRadixBits; ++level) {
    const int shift = 32 - kRadixBits * (level + 1);
    const uint32_t prefix_mask = level == 0 ? 0u : ~0u << (shift + kRadixBits);
    for (int b = threadIdx.x; b < kRadixBins; b += kThreads) hist[b] = 0;
    __syncthreads();
    // Every thread makes the same number of calls (WarpHistogramAdd is warp-collective).
    ForEachElement(row.x, row.n, [&](int64_t, float v, bool valid) {
      const uint32_t key = OrderedKey(v);
      T value = 0;
      if (valid && (key & prefix_mask) == prefix)
        value = Contribution<kMass>(row, v, key, floor_key);
      WarpHistogramAdd(hist, (key >> shift) & (kRadixBins - 1), value, value != 0);
    });
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l owns bins [8l, 8l + 8); suffix sums over lanes find the crossing lane.
      constexpr int kPerLane = kRadixBins / 32;
      T lane_sum = 0;
      for (int j = 0; j < kPerLane; ++j) lane_sum += hist[lane * kPerLane + j];
      T suffix = lane_sum;  // sum over lanes >= this one
      for (int offset = 1; offset < 32; offset *= 2) {
        const T other = __shfl_down_sync(kFullMask, suffix, offset);
        if (lane + offset < 32) suffix += other;
      }
      double level_target = target;
      if (level == 0 && target_fraction > 0.0f) {
        const T total = __shfl_sync(kFullMask, suffix, 0);
        level_target = static_cast<double>(target_fraction) * static_cast<double>(total);
        if (lane == 0) shared_target = level_target;
      } else if (level > 0 && target_fraction > 0.0f) {
        level_target = shared_target;
      }
      const unsigned qualifying =
          __ballot_sync(kFullMask, static_cast<double>(above + suffix) >= level_target);
      // The qualifying lanes are 0 ... L (suffix sums fall with the lane); take the highest.
      const unsigned crossing = qualifying != 0u ? 31u - __clz(qualifying) : 0u;
      if (lane == crossing) {
        T running = above + suffix - lane_sum;
        uint32_t bin = lane * kPerLane;
        T bin_above = running;
        for (int j = kPerLane - 1; j >= 0; --j) {
          const T count = hist[lane * kPerLane + j];
          if (static_cast<double>(running + count) >= level_target) {
            bin = lane * kPerLane + j;
            bin_above = running;
            break;
          }
          running += count;
        }
        chosen_bin = bin;
        chosen_above = bin_above;
      }
    }
    __syncthreads();
    prefix |= chosen_bin << shift;
    above = chosen_above;
    __syncthreads();  // chosen_* and hist are rewritten by the next level
  }
  return prefix;
}

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
  const float* x = p.logits + r * p.row_stride;
  const int64_t n = p.vocab;
  const bool want_logprob = p.logprobs != nullptr;
  const RowSummary summary = SummarizeRow(x, n, want_logprob);
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
      p.logprobs[r] = __fsub_rn(__fsub_rn(x[token], summary.lse.max), logf(summary.lse.sum));
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
