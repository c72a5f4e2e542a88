// Device building blocks of the sampling kernels (sampling.cu, top_logprobs.cu): the row walk
// with a fixed element-to-thread mapping, order-preserving keys, the block's argmax and
// log-sum-exp, and the count / mass threshold searches (radix select and bisection). Every
// function assumes one kThreads-thread block per row and is called by all of its threads.
#pragma once

#include <cstdint>

namespace flatfleet::cuda::internal::sampling_device {
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

inline __device__ RowSummary SummarizeRow(const float* x, int64_t n, bool want_lse) {
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
  __syncthreads();  // readers of an earlier call's warp results are done
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

}  // namespace flatfleet::cuda::internal::sampling_device
