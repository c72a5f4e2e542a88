// GPTQ on the GPU (kernels/cuda/gptq_solver.h) at Llama-3-70B's layer shapes, timed with CUDA
// events: the whole solve (dampening, three cuSOLVER factorisations, the block loop) per weight,
// and the Gram accumulation H += X^T X (cuBLAS DSYRK on widened rows) per batch of calibration
// tokens. The target is one 70B layer (q, k, v, o, gate, up, down) in <= 20 s.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/gptq_solver.h"

namespace {

using flatfleet::cuda::AccumulateGramOnDevice;
using flatfleet::cuda::DeviceGptqSolve;
using flatfleet::cuda::DeviceGramAccumulate;
using flatfleet::cuda::GptqSolverStatus;

bool HaveGpu(benchmark::State& state) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no GPU");
    return false;
  }
  return true;
}

// Uniform [-1, 1) floats from a 64-bit LCG: fast enough for hundreds of millions of values.
std::vector<float> RandomFloats(int64_t count, uint64_t seed) {
  std::vector<float> values(count);
  uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (float& v : values) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<float>(static_cast<int32_t>(state >> 32)) * (1.0f / 2147483648.0f);
  }
  return values;
}

constexpr int64_t kCalibrationTokens = 2048;  // rank-deficient for k > 2048: damping makes it PD

// range(0) = n (outputs), range(1) = k (inputs).
void BM_GptqSolve(benchmark::State& state) {
  if (!HaveGpu(state)) return;
  const int64_t n = state.range(0), k = state.range(1);
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  cublasHandle_t cublas;
  cusolverDnHandle_t cusolver;
  cublasCreate(&cublas);
  cusolverDnCreate(&cusolver);
  auto workspace_bytes = flatfleet::cuda::GptqSolverWorkspaceBytes(n, k, 128, cusolver);
  if (!workspace_bytes.ok()) {
    state.SkipWithError(std::string(workspace_bytes.status().message()).c_str());
    return;
  }
  float *weight, *x;
  double *hessian, *gram, *gram_workspace;
  int8_t *codes, *zeros;
  uint16_t* scales;
  GptqSolverStatus* status;
  void* workspace;
  const std::vector<float> host_weight = RandomFloats(n * k, 1);
  const std::vector<float> host_x = RandomFloats(kCalibrationTokens * k, 2);
  cudaMalloc(&weight, sizeof(float) * n * k);
  cudaMalloc(&x, sizeof(float) * kCalibrationTokens * k);
  cudaMalloc(&hessian, sizeof(double) * k * k);
  cudaMalloc(&gram, sizeof(double) * k * k);
  const size_t gram_workspace_bytes = sizeof(double) * 1024 * k;
  cudaMalloc(&gram_workspace, gram_workspace_bytes);
  cudaMalloc(&codes, n * k);
  cudaMalloc(&zeros, n * (k / 128));
  cudaMalloc(&scales, sizeof(uint16_t) * n * (k / 128));
  cudaMalloc(&status, sizeof(GptqSolverStatus));
  cudaMalloc(&workspace, *workspace_bytes);
  cudaMemcpy(weight, host_weight.data(), sizeof(float) * n * k, cudaMemcpyHostToDevice);
  cudaMemcpy(x, host_x.data(), sizeof(float) * host_x.size(), cudaMemcpyHostToDevice);
  cudaMemsetAsync(gram, 0, sizeof(double) * k * k, stream);
  DeviceGramAccumulate accumulate{.rows = kCalibrationTokens,
                                  .cols = k,
                                  .x = x,
                                  .gram = gram,
                                  .workspace = gram_workspace,
                                  .workspace_bytes = gram_workspace_bytes,
                                  .cublas = cublas};
  if (!AccumulateGramOnDevice(accumulate, stream).ok()) {
    state.SkipWithError("Gram accumulation failed");
    return;
  }
  DeviceGptqSolve solve;
  solve.rows = n;
  solve.cols = k;
  solve.format = {.bits = 4, .symmetric = true, .group_size = 128};  // w4a8-gptq's weights
  solve.weight = weight;
  solve.hessian = hessian;
  solve.codes = codes;
  solve.scales = scales;
  solve.zero_points = zeros;
  solve.status = status;
  solve.workspace = workspace;
  solve.workspace_bytes = *workspace_bytes;
  solve.cublas = cublas;
  solve.cusolver = cusolver;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (auto _ : state) {
    // The solve overwrites H: a fresh copy each iteration, outside the timed region.
    cudaMemcpyAsync(hessian, gram, sizeof(double) * k * k, cudaMemcpyDeviceToDevice, stream);
    cudaMemsetAsync(status, 0, sizeof(GptqSolverStatus), stream);
    cudaEventRecord(start, stream);
    const absl::Status launched = flatfleet::cuda::SolveGptqOnDevice(solve, stream);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    if (!launched.ok()) {
      state.SkipWithError(std::string(launched.message()).c_str());
      break;
    }
    GptqSolverStatus host_status;
    cudaMemcpy(&host_status, status, sizeof(host_status), cudaMemcpyDeviceToHost);
    if (const absl::Status error = flatfleet::cuda::GptqSolverError(host_status); !error.ok()) {
      state.SkipWithError(std::string(error.message()).c_str());
      break;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  // potrf + potri + potrf ~ 4/3 k^3 FLOPs, the block updates ~ n k^2.
  const double flops = 4.0 / 3.0 * double(k) * k * k + double(n) * k * k;
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["device_GiB"] =
      double(sizeof(double) * k * k + sizeof(float) * n * k + n * k + *workspace_bytes) /
      double(1 << 30);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  for (void* p : {static_cast<void*>(weight), static_cast<void*>(x), static_cast<void*>(hessian),
                  static_cast<void*>(gram), static_cast<void*>(gram_workspace),
                  static_cast<void*>(codes), static_cast<void*>(zeros), static_cast<void*>(scales),
                  static_cast<void*>(status), workspace}) {
    cudaFree(p);
  }
  cublasDestroy(cublas);
  cusolverDnDestroy(cusolver);
  cudaStreamDestroy(stream);
}
// Llama-3-70B: q/o (8192 x 8192), down_proj (8192 x 28672), gate+up (57344 x 8192).
BENCHMARK(BM_GptqSolve)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2)
    ->Args({8192, 8192})
    ->Args({8192, 28672})
    ->Args({57344, 8192});

// range(0) = k (features), range(1) = tokens per batch.
void BM_GramAccumulate(benchmark::State& state) {
  if (!HaveGpu(state)) return;
  const int64_t k = state.range(0), tokens = state.range(1);
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  cublasHandle_t cublas;
  cublasCreate(&cublas);
  float* x;
  double *gram, *workspace;
  const size_t workspace_bytes = sizeof(double) * 1024 * k;
  const std::vector<float> host_x = RandomFloats(tokens * k, 3);
  cudaMalloc(&x, sizeof(float) * tokens * k);
  cudaMalloc(&gram, sizeof(double) * k * k);
  cudaMalloc(&workspace, workspace_bytes);
  cudaMemcpy(x, host_x.data(), sizeof(float) * host_x.size(), cudaMemcpyHostToDevice);
  cudaMemset(gram, 0, sizeof(double) * k * k);
  DeviceGramAccumulate accumulate{.rows = tokens,
                                  .cols = k,
                                  .x = x,
                                  .gram = gram,
                                  .workspace = workspace,
                                  .workspace_bytes = workspace_bytes,
                                  .cublas = cublas};
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (auto _ : state) {
    cudaEventRecord(start, stream);
    const absl::Status launched = AccumulateGramOnDevice(accumulate, stream);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    if (!launched.ok()) {
      state.SkipWithError(std::string(launched.message()).c_str());
      break;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  // DSYRK: tokens * k * (k + 1) FLOPs (the upper triangle's multiply-adds).
  state.counters["FLOP/s"] = benchmark::Counter(double(tokens) * k * (k + 1) * state.iterations(),
                                                benchmark::Counter::kIsRate);
  state.counters["tokens/s"] =
      benchmark::Counter(double(tokens) * state.iterations(), benchmark::Counter::kIsRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(x);
  cudaFree(gram);
  cudaFree(workspace);
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
}
// 512-token calibration batches (quantize's default --calib-batch-tokens) at 70B's widths.
BENCHMARK(BM_GramAccumulate)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5)
    ->Args({8192, 512})
    ->Args({28672, 512});

}  // namespace
