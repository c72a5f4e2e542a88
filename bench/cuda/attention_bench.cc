// The attention path at Llama-3-8B's shape (32 q heads, 8 KV heads, head_dim 128), timed with CUDA
// events around each call:
//   * BM_PagedAttentionDecode/batch/context/int8: one query per sequence over a fragmented paged
//     cache (16-position blocks in shuffled order). Reports the KV bytes read per second (keys,
//     values and INT8 scales, each once) and their fraction of a 4.3 TB/s copy roofline (H200).
//   * BM_PagedAttentionDecodeGraphBound: the same with max_context_length = 32768 (a decode graph
//     captured for long contexts replayed on short ones), to show what the idle splits cost.
//   * BM_PagedAttentionDecodeSplits/batch/context/int8/splits: forced split counts, to tune the
//     split heuristic (kDecodeTargetCtas, kDecodeMinSplitPositions in paged_attention_launch.h).
//   * BM_PagedAttentionPrefill/int8: 8 sequences x 2048 causal tokens; TFLOP/s counting
//     4 * S^2 / 2 * heads * head_dim per sequence.
//   * BM_RotaryKvWrite/rows/int8: bytes moved per second (qkv read, q and K/V written).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/rotary_kv_write.h"

namespace {

using flatfleet::cuda::KvCacheLayer;
using flatfleet::cuda::PagedAttentionParams;

constexpr int64_t kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlockSize = 16;
constexpr double kRooflineBytesPerSecond = 4.3e12;

bool HasGpu(benchmark::State& state) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no GPU");
    return false;
  }
  return true;
}

// Device memory holding `count` copies of host data (or uninitialised when `host` is empty).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    if (cudaMalloc(&pointer_, std::max<size_t>(count, 1) * sizeof(T)) != cudaSuccess) {
      pointer_ = nullptr;
    }
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (pointer_ != nullptr) {
      cudaMemcpy(pointer_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    }
  }
  ~DeviceArray() { cudaFree(pointer_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return static_cast<T*>(pointer_); }

 private:
  void* pointer_ = nullptr;
  size_t count_;
};

// bf16 bit patterns of modest finite values (|x| in [2^-7, 2)), or FP16 scales in [2^-8, 2^-7).
std::vector<uint16_t> RandomBf16(size_t count, uint32_t seed) {
  std::vector<uint16_t> bits(count);
  uint32_t s = seed | 1u;
  for (auto& b : bits) {
    s = s * 1664525u + 1013904223u;
    b = static_cast<uint16_t>(((s >> 16) & 0x81ffu) | 0x3c00u);
  }
  return bits;
}
std::vector<uint16_t> RandomHalfScales(size_t count, uint32_t seed) {
  std::vector<uint16_t> bits(count);
  uint32_t s = seed | 1u;
  for (auto& b : bits) {
    s = s * 1664525u + 1013904223u;
    b = static_cast<uint16_t>(0x1c00u | ((s >> 16) & 0x3ffu));
  }
  return bits;
}
std::vector<int8_t> RandomCodes(size_t count, uint32_t seed) {
  std::vector<int8_t> codes(count);
  uint32_t s = seed | 1u;
  for (auto& c : codes) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    c = static_cast<int8_t>(static_cast<int>(s % 255) - 127);
  }
  return codes;
}

// A paged cache of `num_blocks` blocks with random contents, bf16 or INT8.
struct DeviceCache {
  DeviceCache(int64_t num_blocks, bool int8)
      : elements(num_blocks * kBlockSize * kKvHeads * kHeadDim),
        keys(int8 ? 1 : elements),
        values(int8 ? 1 : elements),
        key_codes(int8 ? elements : 1),
        value_codes(int8 ? elements : 1),
        key_scales(int8 ? num_blocks * kBlockSize * kKvHeads : 1),
        value_scales(int8 ? num_blocks * kBlockSize * kKvHeads : 1) {
    if (int8) {
      const std::vector<int8_t> codes = RandomCodes(elements, 7);
      cudaMemcpy(key_codes.get(), codes.data(), elements, cudaMemcpyHostToDevice);
      cudaMemcpy(value_codes.get(), codes.data(), elements, cudaMemcpyHostToDevice);
      const std::vector<uint16_t> scales = RandomHalfScales(num_blocks * kBlockSize * kKvHeads, 8);
      cudaMemcpy(key_scales.get(), scales.data(), scales.size() * 2, cudaMemcpyHostToDevice);
      cudaMemcpy(value_scales.get(), scales.data(), scales.size() * 2, cudaMemcpyHostToDevice);
    } else {
      const std::vector<uint16_t> bits = RandomBf16(elements, 9);
      cudaMemcpy(keys.get(), bits.data(), elements * 2, cudaMemcpyHostToDevice);
      cudaMemcpy(values.get(), bits.data(), elements * 2, cudaMemcpyHostToDevice);
    }
    layer = {
        .keys = int8 ? static_cast<void*>(key_codes.get()) : static_cast<void*>(keys.get()),
        .values = int8 ? static_cast<void*>(value_codes.get()) : static_cast<void*>(values.get()),
        .key_scales = int8 ? key_scales.get() : nullptr,
        .value_scales = int8 ? value_scales.get() : nullptr,
        .int8 = int8,
        .num_blocks = num_blocks,
        .block_size = kBlockSize,
        .num_kv_heads = kKvHeads,
        .head_dim = kHeadDim};
  }
  int64_t elements;
  DeviceArray<uint16_t> keys, values;
  DeviceArray<int8_t> key_codes, value_codes;
  DeviceArray<uint16_t> key_scales, value_scales;
  KvCacheLayer layer;
};

// Times `launch` with CUDA events per iteration (after one warm-up call that checks for errors).
template <typename Launch>
void TimeLaunches(benchmark::State& state, Launch launch) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  if (!launch() || cudaDeviceSynchronize() != cudaSuccess) {
    state.SkipWithError("launch failed");
  } else {
    for (auto _ : state) {
      cudaEventRecord(start);
      launch();
      cudaEventRecord(stop);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      state.SetIterationTime(ms / 1e3);
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// Sequences of the given query counts and context lengths over a cache whose blocks are handed
// out in shuffled order; runs PagedAttention on them.
struct AttentionSetup {
  AttentionSetup(int64_t num_sequences, int64_t num_queries, int64_t context, bool int8,
                 int64_t max_context_bound, int64_t num_splits = 0)
      : max_blocks((std::max(context, max_context_bound) + kBlockSize - 1) / kBlockSize),
        cache(num_sequences * ((context + kBlockSize - 1) / kBlockSize), int8),
        q(RandomBf16(num_sequences * num_queries * kHeads * kHeadDim, 3)),
        out(num_sequences * num_queries * kHeads * kHeadDim),
        tables(MakeTables(num_sequences, context)),
        query_starts(MakeStarts(num_sequences, num_queries)),
        context_lengths(std::vector<int32_t>(num_sequences, static_cast<int32_t>(context))) {
    params.q = reinterpret_cast<const __nv_bfloat16*>(q.get());
    params.out = reinterpret_cast<__nv_bfloat16*>(out.get());
    params.cache = cache.layer;
    params.block_tables = tables.get();
    params.max_blocks_per_sequence = max_blocks;
    params.query_starts = query_starts.get();
    params.context_lengths = context_lengths.get();
    params.num_sequences = num_sequences;
    params.num_q_rows = num_sequences * num_queries;
    params.num_heads = kHeads;
    params.num_kv_heads = kKvHeads;
    params.head_dim = kHeadDim;
    params.max_query_length = num_queries;
    params.max_context_length = std::max(context, max_context_bound);
    params.scale = 0.08838834764831845f;
    params.decode_num_splits = num_splits;
    workspace_bytes = flatfleet::cuda::PagedAttentionWorkspaceBytes(params);
    workspace = std::make_unique<DeviceArray<uint8_t>>(workspace_bytes);
    params.workspace = workspace->get();
    params.workspace_bytes = workspace_bytes;
  }
  std::vector<int32_t> MakeTables(int64_t num_sequences, int64_t context) const {
    const int64_t used = (context + kBlockSize - 1) / kBlockSize;
    std::vector<int32_t> order(num_sequences * used);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(5));
    std::vector<int32_t> table(num_sequences * max_blocks, 0);
    for (int64_t s = 0; s < num_sequences; ++s) {
      for (int64_t b = 0; b < used; ++b) table[s * max_blocks + b] = order[s * used + b];
    }
    return table;
  }
  static std::vector<int32_t> MakeStarts(int64_t num_sequences, int64_t num_queries) {
    std::vector<int32_t> starts(num_sequences + 1);
    for (int64_t s = 0; s <= num_sequences; ++s) starts[s] = static_cast<int32_t>(s * num_queries);
    return starts;
  }
  bool Run() const { return flatfleet::cuda::PagedAttention(params, nullptr).ok(); }

  int64_t max_blocks;
  DeviceCache cache;
  DeviceArray<uint16_t> q, out;
  DeviceArray<int32_t> tables, query_starts, context_lengths;
  size_t workspace_bytes = 0;
  std::unique_ptr<DeviceArray<uint8_t>> workspace;
  PagedAttentionParams params;
};

double KvBytes(int64_t batch, int64_t context, bool int8) {
  const double positions = static_cast<double>(batch) * context * kKvHeads;
  return int8 ? positions * (2.0 * kHeadDim + 2 * 2) : positions * 2.0 * kHeadDim * 2;
}

void DecodeBenchmark(benchmark::State& state, int64_t max_context_bound, int64_t num_splits = 0) {
  if (!HasGpu(state)) return;
  const int64_t batch = state.range(0), context = state.range(1);
  const bool int8 = state.range(2) != 0;
  AttentionSetup setup(batch, 1, context, int8, max_context_bound, num_splits);
  TimeLaunches(state, [&] { return setup.Run(); });
  const double bytes = KvBytes(batch, context, int8);
  state.counters["KV_TBps"] =
      benchmark::Counter(bytes * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_roofline"] = benchmark::Counter(bytes / kRooflineBytesPerSecond,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.counters["workspace_MB"] = static_cast<double>(setup.workspace_bytes) * 1e-6;
}

void BM_PagedAttentionDecode(benchmark::State& state) { DecodeBenchmark(state, 0); }
void BM_PagedAttentionDecodeGraphBound(benchmark::State& state) { DecodeBenchmark(state, 32768); }
// Tuning aid for kDecodeTargetCtas / kDecodeMinSplitPositions: a forced split count (4th arg).
void BM_PagedAttentionDecodeSplits(benchmark::State& state) {
  DecodeBenchmark(state, 0, state.range(3));
}

void BM_PagedAttentionPrefill(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const bool int8 = state.range(0) != 0;
  constexpr int64_t kSequences = 8, kTokens = 2048;
  AttentionSetup setup(kSequences, kTokens, kTokens, int8, 0);
  TimeLaunches(state, [&] { return setup.Run(); });
  const double flops =
      4.0 * kTokens * kTokens / 2.0 * kHeads * kHeadDim * static_cast<double>(kSequences);
  state.counters["TFLOPs"] =
      benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_RotaryKvWrite(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const int64_t rows = state.range(0);
  const bool int8 = state.range(1) != 0;
  const int64_t width = (kHeads + 2 * kKvHeads) * kHeadDim;
  DeviceArray<uint16_t> qkv(RandomBf16(rows * width, 11)), q_out(rows * kHeads * kHeadDim);
  std::vector<int32_t> positions(rows), slots(rows);
  std::iota(positions.begin(), positions.end(), 100);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), std::mt19937(3));
  std::vector<float> inv_freq(kHeadDim / 2);
  for (int64_t i = 0; i < kHeadDim / 2; ++i) {
    inv_freq[i] = 1.0f / std::pow(500000.0f, static_cast<float>(2 * i) / kHeadDim);
  }
  DeviceArray<int32_t> d_positions(positions), d_slots(slots);
  DeviceArray<float> d_inv_freq(inv_freq);
  DeviceCache cache((rows + kBlockSize - 1) / kBlockSize, int8);
  flatfleet::cuda::RotaryKvWriteParams params;
  params.qkv = reinterpret_cast<const __nv_bfloat16*>(qkv.get());
  params.positions = d_positions.get();
  params.inv_freq = d_inv_freq.get();
  params.slot_mapping = d_slots.get();
  params.q_out = reinterpret_cast<__nv_bfloat16*>(q_out.get());
  params.cache = cache.layer;
  params.rows = rows;
  params.num_heads = kHeads;
  params.num_kv_heads = kKvHeads;
  params.head_dim = kHeadDim;
  TimeLaunches(state, [&] { return flatfleet::cuda::RotaryKvWrite(params, nullptr).ok(); });
  const double kv_bytes = int8 ? 2.0 * kKvHeads * (kHeadDim + 2) : 2.0 * kKvHeads * kHeadDim * 2;
  const double bytes = rows * (width * 2.0 + kHeads * kHeadDim * 2.0 + kv_bytes);
  state.counters["GBps"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void DecodeShapes(benchmark::internal::Benchmark* b) {
  for (int64_t int8 : {0, 1}) {
    for (int64_t batch : {1, 16, 64}) {
      for (int64_t context : {1024, 4096}) b->Args({batch, context, int8});
    }
  }
}

BENCHMARK(BM_PagedAttentionDecode)->UseManualTime()->Apply(DecodeShapes);
BENCHMARK(BM_PagedAttentionDecodeGraphBound)
    ->UseManualTime()
    ->Args({16, 1024, 0})
    ->Args({64, 1024, 0})
    ->Args({64, 1024, 1});
BENCHMARK(BM_PagedAttentionDecodeSplits)->UseManualTime()->Apply([](auto* b) {
  for (int64_t int8 : {0, 1}) {
    for (auto [batch, context] : {std::pair<int64_t, int64_t>{16, 1024}, {16, 4096}, {64, 4096}}) {
      for (int64_t splits : {1, 2, 4, 8, 16, 32}) b->Args({batch, context, int8, splits});
    }
  }
});
BENCHMARK(BM_PagedAttentionPrefill)->UseManualTime()->Arg(0)->Arg(1);
BENCHMARK(BM_RotaryKvWrite)
    ->UseManualTime()
    ->Args({64, 0})
    ->Args({64, 1})
    ->Args({8192, 0})
    ->Args({8192, 1});

}  // namespace
