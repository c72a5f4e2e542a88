// Bandwidth of the pointwise, norm and embedding kernels (the bytes each call must move, per
// second, and as the fraction `of_peak` of 4.3 TB/s, a realistic HBM streaming ceiling of the
// H200) and the time of a sampling call, timed with CUDA events on the real model shapes.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/activation_ops.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/fused_add_rmsnorm.h"
#include "kernels/cuda/sampling.h"

namespace {

constexpr double kPeakBytesPerSecond = 4.3e12;

bool HaveGpu(benchmark::State& state) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no GPU");
    return false;
  }
  return true;
}

// Device buffer of `count` elements with every byte 0x3c: 0.0115 as float32 (0x3c3c3c3c) and as
// bfloat16 (0x3c3c). The values do not matter for bandwidth, and filling gigabytes on the host
// would dominate the run.
template <typename T>
T* DeviceFilled(size_t count) {
  T* device = nullptr;
  cudaMalloc(&device, count * sizeof(T));
  cudaMemset(device, 0x3c, count * sizeof(T));
  return device;
}

// Times `launch` with CUDA events (after two warm-up calls) and reports bytes moved per call.
template <typename Launch>
void TimeKernel(benchmark::State& state, double bytes_per_call, Launch launch) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int i = 0; i < 2; ++i) launch();
  if (cudaDeviceSynchronize() != cudaSuccess) {
    state.SkipWithError("kernel failed");
    return;
  }
  for (auto _ : state) {
    cudaEventRecord(start);
    launch();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes_per_call));
  state.counters["of_peak"] = benchmark::Counter(
      state.iterations() * bytes_per_call / kPeakBytesPerSecond, benchmark::Counter::kIsRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// Residual += bf16 delta, then the norm into bf16: reads residual, delta, weight; writes the
// residual back and the bf16 output.
void BM_FusedAddRmsNorm(benchmark::State& state) {
  if (!HaveGpu(state)) return;
  const int64_t rows = state.range(0), hidden = state.range(1);
  float* residual = DeviceFilled<float>(rows * hidden);
  auto* delta = DeviceFilled<__nv_bfloat16>(rows * hidden);
  float* weight = DeviceFilled<float>(hidden);
  __nv_bfloat16* out = nullptr;
  cudaMalloc(&out, rows * hidden * sizeof(__nv_bfloat16));
  const flatfleet::cuda::DeviceFusedAddRmsNorm args{.residual = residual,
                                                    .rows = rows,
                                                    .hidden = hidden,
                                                    .delta = delta,
                                                    .weight = weight,
                                                    .eps = 1e-5f,
                                                    .out = out};
  TimeKernel(state, static_cast<double>(rows * hidden) * (4 + 2 + 4 + 2) + hidden * 4.0,
             [&] { (void)flatfleet::cuda::FusedAddRmsNorm(args, nullptr); });
  cudaFree(residual);
  cudaFree(delta);
  cudaFree(weight);
  cudaFree(out);
}
BENCHMARK(BM_FusedAddRmsNorm)
    ->UseManualTime()
    ->ArgsProduct({{1, 64, 4096}, {4096, 8192}})
    ->ArgNames({"rows", "hidden"});

// The MLP's SiLU-gated product at Llama-3-8B / Mixtral's intermediate size: reads gate and up,
// writes the product (all bf16).
void BM_SiluMul(benchmark::State& state) {
  if (!HaveGpu(state)) return;
  const int64_t rows = state.range(0), inter = state.range(1);
  auto* gate_up = DeviceFilled<__nv_bfloat16>(rows * 2 * inter);
  __nv_bfloat16* out = nullptr;
  cudaMalloc(&out, rows * inter * sizeof(__nv_bfloat16));
  const flatfleet::cuda::DeviceSiluMul args{
      .gate_up = gate_up, .rows = rows, .inter = inter, .out = out};
  TimeKernel(state, static_cast<double>(rows * inter) * (2 + 2 + 2),
             [&] { (void)flatfleet::cuda::SiluMul(args, nullptr); });
  cudaFree(gate_up);
  cudaFree(out);
}
BENCHMARK(BM_SiluMul)
    ->UseManualTime()
    ->ArgsProduct({{1, 64, 4096}, {14336}})
    ->ArgNames({"rows", "inter"});

// Embedding gather from a Llama-3 vocabulary (128256 rows, bf16) into the float32 residual.
void BM_Embedding(benchmark::State& state) {
  if (!HaveGpu(state)) return;
  const int64_t rows = state.range(0), hidden = state.range(1), table_rows = 128256;
  auto* table = DeviceFilled<__nv_bfloat16>(table_rows * hidden);
  std::vector<int32_t> ids(rows);
  std::mt19937 rng(6);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % table_rows);
  int32_t* d_ids = nullptr;
  cudaMalloc(&d_ids, rows * sizeof(int32_t));
  cudaMemcpy(d_ids, ids.data(), rows * sizeof(int32_t), cudaMemcpyHostToDevice);
  float* out = nullptr;
  cudaMalloc(&out, rows * hidden * sizeof(float));
  const flatfleet::cuda::DeviceEmbeddingLookup args{.table = table,
                                                    .table_rows = table_rows,
                                                    .hidden = hidden,
                                                    .ids = d_ids,
                                                    .rows = rows,
                                                    .out = out};
  TimeKernel(state, static_cast<double>(rows * hidden) * (2 + 4) + rows * 4.0,
             [&] { (void)flatfleet::cuda::EmbeddingLookup(args, nullptr); });
  cudaFree(table);
  cudaFree(d_ids);
  cudaFree(out);
}
BENCHMARK(BM_Embedding)
    ->UseManualTime()
    ->ArgsProduct({{1, 64, 4096}, {4096, 8192}})
    ->ArgNames({"rows", "hidden"});

// Sampling 64 rows of a Llama-3 vocabulary. mode 0: greedy; 1: temperature 1, top-p 0.9;
// 2: temperature 1, top-k 50 and top-p 0.9; 3: temperature 1 only. algorithm 0: radix select,
// 1: bisection (the reference). Bytes: the logits, read once (the later passes hit L2).
void BM_Sampling(benchmark::State& state) {
  if (!HaveGpu(state)) return;
  const int64_t rows = 64, vocab = 128256;
  const int mode = static_cast<int>(state.range(0));
  const bool bisection = state.range(1) != 0;
  // Logit-like rows: a Gaussian body with a few strong candidates.
  std::vector<float> host(rows * vocab);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (auto& v : host) v = normal(rng);
  for (int64_t r = 0; r < rows; ++r) {
    for (int j = 0; j < 20; ++j) host[r * vocab + rng() % vocab] = 12.0f + normal(rng);
  }
  float* logits = nullptr;
  cudaMalloc(&logits, host.size() * sizeof(float));
  cudaMemcpy(logits, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice);
  const std::vector<float> temperature(rows, mode == 0 ? 0.0f : 1.0f);
  const std::vector<float> top_p(rows, mode == 1 || mode == 2 ? 0.9f : 1.0f);
  const std::vector<int32_t> top_k(rows, mode == 2 ? 50 : 0);
  std::vector<uint64_t> seed(rows), step(rows, 3);
  for (int64_t r = 0; r < rows; ++r) seed[r] = 1000 + r;
  float *d_temperature, *d_top_p, *d_logprobs;
  int32_t *d_top_k, *d_tokens;
  uint64_t *d_seed, *d_step;
  cudaMalloc(&d_temperature, rows * sizeof(float));
  cudaMalloc(&d_top_p, rows * sizeof(float));
  cudaMalloc(&d_logprobs, rows * sizeof(float));
  cudaMalloc(&d_top_k, rows * sizeof(int32_t));
  cudaMalloc(&d_tokens, rows * sizeof(int32_t));
  cudaMalloc(&d_seed, rows * sizeof(uint64_t));
  cudaMalloc(&d_step, rows * sizeof(uint64_t));
  cudaMemcpy(d_temperature, temperature.data(), rows * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(d_top_p, top_p.data(), rows * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(d_top_k, top_k.data(), rows * sizeof(int32_t), cudaMemcpyHostToDevice);
  cudaMemcpy(d_seed, seed.data(), rows * sizeof(uint64_t), cudaMemcpyHostToDevice);
  cudaMemcpy(d_step, step.data(), rows * sizeof(uint64_t), cudaMemcpyHostToDevice);
  const flatfleet::cuda::DeviceSampling args{
      .logits = logits,
      .rows = rows,
      .vocab = vocab,
      .temperature = d_temperature,
      .top_k = d_top_k,
      .top_p = d_top_p,
      .seed = d_seed,
      .step = d_step,
      .tokens = d_tokens,
      .logprobs = d_logprobs,
      .algorithm = bisection ? flatfleet::cuda::SamplingAlgorithm::kBisection
                             : flatfleet::cuda::SamplingAlgorithm::kRadixSelect};
  TimeKernel(state, static_cast<double>(rows * vocab) * 4,
             [&] { (void)flatfleet::cuda::SampleTokens(args, nullptr); });
  for (void* p :
       {static_cast<void*>(logits), static_cast<void*>(d_temperature), static_cast<void*>(d_top_p),
        static_cast<void*>(d_logprobs), static_cast<void*>(d_top_k), static_cast<void*>(d_tokens),
        static_cast<void*>(d_seed), static_cast<void*>(d_step)}) {
    cudaFree(p);
  }
}
BENCHMARK(BM_Sampling)
    ->UseManualTime()
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({3, 0})
    ->Args({1, 1})
    ->ArgNames({"mode", "bisection"});

}  // namespace
