// RMSNorm kernel bandwidth: bytes moved (read x, write y) per second, timed with CUDA events.
#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/rmsnorm.h"

namespace {

void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const int64_t dim = state.range(1);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no GPU");
    return;
  }
  std::vector<float> host(rows * dim);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& v : host) v = dist(rng);
  float *x, *y, *gamma;
  cudaMalloc(&x, host.size() * sizeof(float));
  cudaMalloc(&y, host.size() * sizeof(float));
  cudaMalloc(&gamma, dim * sizeof(float));
  cudaMemcpy(x, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(gamma, host.data(), dim * sizeof(float), cudaMemcpyHostToDevice);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (auto _ : state) {
    cudaEventRecord(start);
    flatfleet::cuda::LaunchRmsNorm(x, gamma, rows, dim, 1e-5f, y, nullptr);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  state.SetBytesProcessed(state.iterations() * 2 * rows * dim * sizeof(float));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(x);
  cudaFree(y);
  cudaFree(gamma);
}
// Decode-like (few rows) and prefill-like (many rows) shapes at Llama-3-70B's hidden size.
BENCHMARK(BM_RmsNorm)->UseManualTime()->Args({16, 8192})->Args({512, 8192})->Args({8192, 8192});

}  // namespace

BENCHMARK_MAIN();
