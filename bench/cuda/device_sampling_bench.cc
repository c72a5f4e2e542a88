// The GPU engine's sampling step at 1/16/64/256 rows x the Llama-3 vocabulary (128256): the plain
// sampler (temperature 0.8, top-p 0.9) against the same with every row penalised (repetition,
// frequency and presence over 512 distinct tokens, on a copy of the row), with the top-20
// logprobs of every row (radix select, or the repeated-argmax reference), and with both.
// Bytes/s counts one read of the logits.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "bench/cuda/bf16_bench_util.h"
#include "kernels/cuda/logit_penalties.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/top_logprobs.h"

namespace {

using flatfleet::bench::HasGpu;
using flatfleet::bench::TimeWithEvents;
namespace cuda = flatfleet::cuda;

// A device copy of a host vector, freed with the benchmark.
template <typename T>
T* Upload(const std::vector<T>& host, std::vector<void*>& owned) {
  void* device = nullptr;
  if (cudaMalloc(&device, std::max<size_t>(host.size(), 1) * sizeof(T)) != cudaSuccess) {
    return nullptr;
  }
  cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  owned.push_back(device);
  return static_cast<T*>(device);
}

enum Kind { kPlain = 0, kPenalties = 1, kTopRadix = 2, kTopReference = 3, kBoth = 4 };

void BM_DeviceSampling(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const int64_t rows = state.range(0);
  const int kind = static_cast<int>(state.range(1));
  constexpr int64_t kVocab = 128256;
  constexpr int kEntries = 512;
  std::vector<void*> owned;
  std::vector<float> logits(rows * kVocab);
  uint32_t bits = 12345u;
  for (float& v : logits) {  // xorshift: logits in [-8, 8)
    bits ^= bits << 13;
    bits ^= bits >> 17;
    bits ^= bits << 5;
    v = 16.0f * (static_cast<float>(bits >> 8) / (1 << 24)) - 8.0f;
  }
  std::vector<int32_t> rows_in_order(rows), offsets(rows + 1), counts(rows, 20);
  std::vector<cuda::LogitPenaltyEntry> entries;
  for (int64_t r = 0; r < rows; ++r) {
    rows_in_order[r] = static_cast<int32_t>(r);
    offsets[r] = static_cast<int32_t>(entries.size());
    for (int e = 0; e < kEntries; ++e) {
      entries.push_back({.token = static_cast<int32_t>((r * 7919 + e * 251) % kVocab),
                         .completion_count = e % 3,
                         .flags = cuda::LogitPenaltyEntry::kInPrompt});
    }
  }
  offsets[rows] = static_cast<int32_t>(entries.size());
  const float* d_logits = Upload(logits, owned);
  const int32_t* d_rows = Upload(rows_in_order, owned);
  const int32_t* d_offsets = Upload(offsets, owned);
  const int32_t* d_counts = Upload(counts, owned);
  const cuda::LogitPenaltyEntry* d_entries = Upload(entries, owned);
  const float* d_repetition = Upload(std::vector<float>(rows, 1.1f), owned);
  const float* d_frequency = Upload(std::vector<float>(rows, 0.3f), owned);
  const float* d_presence = Upload(std::vector<float>(rows, 0.2f), owned);
  const float* d_temperature = Upload(std::vector<float>(rows, 0.8f), owned);
  const float* d_top_p = Upload(std::vector<float>(rows, 0.9f), owned);
  const uint64_t* d_seed = Upload(std::vector<uint64_t>(rows, 7), owned);
  float* d_processed = Upload(std::vector<float>(rows * kVocab), owned);
  int32_t* d_tokens = Upload(std::vector<int32_t>(rows), owned);
  float* d_logprobs = Upload(std::vector<float>(rows), owned);
  float* d_chosen = Upload(std::vector<float>(rows), owned);
  int32_t* d_top_ids = Upload(std::vector<int32_t>(rows * cuda::kMaxTopLogprobs), owned);
  float* d_top_values = Upload(std::vector<float>(rows * cuda::kMaxTopLogprobs), owned);
  if (d_top_values == nullptr) {
    state.SkipWithError("cudaMalloc failed");
    for (void* p : owned) cudaFree(p);
    return;
  }
  const bool penalties = kind == kPenalties || kind == kBoth;
  const bool top = kind == kTopRadix || kind == kTopReference || kind == kBoth;
  const cuda::LogitPenalties penalty_args{.logits = d_logits,
                                          .vocab = kVocab,
                                          .rows = rows,
                                          .source_row = d_rows,
                                          .repetition_penalty = d_repetition,
                                          .frequency_penalty = d_frequency,
                                          .presence_penalty = d_presence,
                                          .entry_offsets = d_offsets,
                                          .entries = d_entries,
                                          .processed = d_processed};
  cuda::DeviceSampling sampling{.logits = d_logits,
                                .rows = rows,
                                .vocab = kVocab,
                                .temperature = d_temperature,
                                .top_p = d_top_p,
                                .seed = d_seed,
                                .tokens = d_tokens,
                                .logprobs = d_logprobs};
  if (penalties) {
    sampling.processed_logits = d_processed;
    sampling.processed_row = d_rows;
  }
  const cuda::TopLogprobs top_args{.logits = d_logits,
                                   .vocab = kVocab,
                                   .rows = rows,
                                   .source_row = d_rows,
                                   .count = d_counts,
                                   .tokens = d_tokens,
                                   .chosen_logprob = d_chosen,
                                   .top_tokens = d_top_ids,
                                   .top_logprobs = d_top_values,
                                   .algorithm = kind == kTopReference
                                                    ? cuda::TopLogprobsAlgorithm::kRepeatedArgmax
                                                    : cuda::TopLogprobsAlgorithm::kRadixSelect};
  TimeWithEvents(state, nullptr, [&] {
    if (penalties && !cuda::ApplyLogitPenalties(penalty_args, nullptr).ok()) return false;
    if (!cuda::SampleTokens(sampling, nullptr).ok()) return false;
    if (top && !cuda::ComputeTopLogprobs(top_args, nullptr).ok()) return false;
    return cudaGetLastError() == cudaSuccess;
  });
  state.counters["logits_bytes_per_s"] = benchmark::Counter(
      static_cast<double>(rows * kVocab * 4), benchmark::Counter::kIsIterationInvariantRate);
  for (void* p : owned) cudaFree(p);
}
BENCHMARK(BM_DeviceSampling)
    ->UseManualTime()
    ->ArgsProduct({{1, 16, 64, 256}, {kPlain, kPenalties, kTopRadix, kTopReference, kBoth}})
    ->ArgNames({"rows", "kind"});

}  // namespace
