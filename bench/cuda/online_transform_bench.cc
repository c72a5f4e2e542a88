// The online input transforms a quantized layer runs on x before quantizing it, at Llama-3 widths
// (8B / 70B hidden 4096 / 8192, down_proj inputs 14336 / 28672) and token counts 1..4096:
//   BM_KroneckerRows  FlatQuant's (x / s) (P1 (x) P2) (kronecker_transform.h), double, exact;
//   BM_KroneckerQuantize  the same fused with the 4-bit quantizer on the TF32 tensor cores
//                     (kronecker_quantize.h): bf16 in, codes and scales out; path 0 is the
//                     kernel's rules (the split over a cluster at decode, P2 staged in shared
//                     memory where it fits), 1 one block per 1-4 rows whatever m, 2 that with P2
//                     from L2 (the kernel before both), 3 the rules with P2 from L2;
//   BM_HadamardRows   the randomized Hadamard rotation (hadamard_transform.h), double, exact;
// the exact ones bf16 in, float32 out, reported as seconds per call (CUDA events, warm) with
// `flops` the transform's multiply-adds x 2 per second. FlatQuant's claim is a transform within 7%
// of the following GEMM's time: compare with BM_W4A8FragmentWgmma / BM_W4A8FragmentGemm at the same
// m and K (bench/RESULTS.md puts them side by side).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/cuda/bf16_bench_util.h"
#include "bench/cuda/cuda_event_timer.h"
#include "benchmark/benchmark.h"
#include "kernels/cpu/quant/hadamard.h"
#include "kernels/cpu/quant/kronecker_transform.h"
#include "kernels/cuda/hadamard_transform.h"
#include "kernels/cuda/kronecker_quantize.h"
#include "kernels/cuda/kronecker_transform.h"

namespace {

using flatfleet::bench::MeanLaunchSeconds;

template <typename T>
T* Upload(const std::vector<T>& host) {
  T* device = nullptr;
  if (cudaMalloc(&device, host.size() * sizeof(T)) != cudaSuccess) return nullptr;
  cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return device;
}

// FlatQuant's operands for m rows of width n: bf16 x, the smoothing, near-identity factors.
struct KroneckerOperands {
  KroneckerOperands(int64_t m, int64_t n)
      : n1(flatfleet::quant::KroneckerLeftFactor(n)), n2(n / n1), x(m * n, /*seed=*/7) {
    std::vector<float> p1_host(n1 * n1), p2_host(n2 * n2), scales_host(n, 1.25f);
    for (int64_t i = 0; i < n1 * n1; ++i) p1_host[i] = i % (n1 + 1) == 0 ? 1.0f : 0.01f;
    for (int64_t i = 0; i < n2 * n2; ++i) p2_host[i] = i % (n2 + 1) == 0 ? 1.0f : -0.01f;
    p1 = Upload(p1_host);
    p2 = Upload(p2_host);
    scales = Upload(scales_host);
  }
  ~KroneckerOperands() {
    for (void* p : {static_cast<void*>(p1), static_cast<void*>(p2), static_cast<void*>(scales)}) {
      cudaFree(p);
    }
  }
  bool ok() const { return x.ok() && p1 != nullptr && p2 != nullptr && scales != nullptr; }

  int64_t n1, n2;
  flatfleet::bench::DeviceBf16 x;  // [m, n] in [-1, 1)
  float* p1 = nullptr;
  float* p2 = nullptr;
  float* scales = nullptr;
};

void BM_KroneckerRows(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1);
  KroneckerOperands operands(m, n);
  float* y = nullptr;
  if (!operands.ok() || cudaMalloc(&y, m * n * 4) != cudaSuccess) {
    state.SkipWithError("cudaMalloc failed (no GPU?)");
    return;
  }
  flatfleet::cuda::DeviceKroneckerRows args;
  args.x = operands.x.get();
  args.type = flatfleet::cuda::ActivationType::kBfloat16;
  args.rows = m;
  args.n1 = operands.n1;
  args.n2 = operands.n2;
  args.divisors = operands.scales;
  args.p1 = operands.p1;
  args.p2 = operands.p2;
  args.y = y;
  if (!flatfleet::cuda::ApplyKroneckerRows(args, nullptr).ok()) {
    state.SkipWithError("ApplyKroneckerRows refused the shape");
  }
  for (auto _ : state) {
    state.SetIterationTime(
        MeanLaunchSeconds([&] { (void)flatfleet::cuda::ApplyKroneckerRows(args, nullptr); }, 20));
  }
  state.counters["flops"] = benchmark::Counter(
      2.0 * m * n * (operands.n1 + operands.n2) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["n1"] = static_cast<double>(operands.n1);
  cudaFree(y);
}

void BM_KroneckerQuantize(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1);
  const int64_t path = state.range(2);
  flatfleet::cuda::internal::KroneckerQuantizeOptions options;
  options.cluster = path == 1 || path == 2 ? 1 : 0;
  options.p2_from_l2 = path >= 2;
  KroneckerOperands operands(m, n);
  int8_t* codes = nullptr;
  uint16_t* code_scales = nullptr;
  if (!operands.ok() || cudaMalloc(&codes, m * n) != cudaSuccess ||
      cudaMalloc(&code_scales, m * 2) != cudaSuccess) {
    state.SkipWithError("cudaMalloc failed (no GPU?)");
    return;
  }
  flatfleet::cuda::DeviceKroneckerQuantize args;
  args.x = operands.x.get();
  args.rows = m;
  args.n1 = operands.n1;
  args.n2 = operands.n2;
  args.divisors = operands.scales;
  args.p1 = operands.p1;
  args.p2 = operands.p2;
  args.clip_ratio = 0.9f;
  args.qmax = 7;
  args.codes = codes;
  args.scales = code_scales;
  if (!flatfleet::cuda::internal::ApplyKroneckerQuantizeWith(args, options, nullptr).ok()) {
    state.SkipWithError("ApplyKroneckerQuantize refused the shape");
  }
  for (auto _ : state) {
    state.SetIterationTime(MeanLaunchSeconds(
        [&] {
          (void)flatfleet::cuda::internal::ApplyKroneckerQuantizeWith(args, options, nullptr);
        },
        20));
  }
  state.counters["flops"] = benchmark::Counter(
      2.0 * m * n * (operands.n1 + operands.n2) * state.iterations(), benchmark::Counter::kIsRate);
  cudaFree(codes);
  cudaFree(code_scales);
}

void BM_HadamardRows(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1);
  // The rotation the engine builds for this width (its power of two, block and signs).
  absl::StatusOr<flatfleet::quant::RandomizedHadamard> rotation =
      flatfleet::quant::RandomizedHadamard::Create(n, /*seed=*/7);
  if (!rotation.ok()) {
    state.SkipWithError("no randomized Hadamard rotation of this size");
    return;
  }
  flatfleet::bench::DeviceBf16 x(m * n, /*seed=*/7);
  double* d_signs = Upload(rotation->signs());
  double* d_block = Upload(rotation->block());
  float* y = nullptr;
  if (!x.ok() || d_signs == nullptr || d_block == nullptr ||
      cudaMalloc(&y, m * n * 4) != cudaSuccess) {
    state.SkipWithError("cudaMalloc failed (no GPU?)");
    return;
  }
  flatfleet::cuda::DeviceHadamardRows args;
  args.x = x.get();
  args.type = flatfleet::cuda::ActivationType::kBfloat16;
  args.rows = m;
  args.power_of_two = rotation->power_of_two();
  args.block_size = rotation->block_size();
  args.signs = d_signs;
  args.block = d_block;
  args.norm = 1.0 / std::sqrt(static_cast<double>(rotation->power_of_two()));
  args.y = y;
  if (!flatfleet::cuda::ApplyHadamardRows(args, nullptr).ok()) {
    state.SkipWithError("ApplyHadamardRows refused the shape");
  }
  for (auto _ : state) {
    state.SetIterationTime(
        MeanLaunchSeconds([&] { (void)flatfleet::cuda::ApplyHadamardRows(args, nullptr); }, 20));
  }
  state.counters["block"] = static_cast<double>(rotation->block_size());
  for (void* ptr :
       {static_cast<void*>(d_signs), static_cast<void*>(d_block), static_cast<void*>(y)}) {
    cudaFree(ptr);
  }
}

void TransformShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n"});
  for (int64_t n : {4096, 8192, 14336, 28672}) {
    for (int64_t m : {1, 16, 256, 4096}) b->Args({m, n});
  }
  b->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
}

// The same shapes, each on the fused kernel's paths.
void KroneckerQuantizeShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n", "path"});
  for (int64_t n : {4096, 8192, 14336, 28672}) {
    for (int64_t m : {1, 16, 256, 4096}) {
      for (int64_t path : {0, 1, 2, 3}) b->Args({m, n, path});
    }
  }
  b->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(3);
}

BENCHMARK(BM_KroneckerRows)->Apply(TransformShapes);
BENCHMARK(BM_KroneckerQuantize)->Apply(KroneckerQuantizeShapes);
BENCHMARK(BM_HadamardRows)->Apply(TransformShapes);

}  // namespace
