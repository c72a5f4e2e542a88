// bf16 linear layers through CublasLtGemm (kernels/cuda/bf16_gemm.h) on Llama-3-8B's shapes.
// Decode (M = 1, 16, 64) is bound by streaming the weights: reported as weight bytes per second
// and as a fraction of 4.3 TB/s. Prefill (M = 16384) is bound by the tensor cores: TFLOP/s
// (2 M N K per call). The LM head writes float32 logits; the other layers bf16. Iterations cycle
// through enough copies of the weights (>= 256 MiB) that they come from HBM, not the 50 MB L2.
// A bias (bf16 output) is added by cuBLASLt's epilogue (bias = 1) or, with the bias pointer one
// element off 16 bytes, by the fallback: float32 GEMM into the workspace, then AddBias (bias = 2).
// autotune = 1: CublasLtGemm's measured algorithm selection (the default), 0: the heuristic's
// first choice. The problem is prepared (tuned) before the timing, which then starts with one
// untimed warm-up call; tune_ms is the host wall time of that Prepare (the tuning cost of one
// problem), and the label names the chosen algorithm and how it was chosen.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "bench/cuda/bf16_bench_util.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/bf16_gemm.h"

namespace {

using flatfleet::cuda::Bf16GemmArgs;
using flatfleet::cuda::CublasLtGemm;
using flatfleet::cuda::GemmElementType;

// Args: m, n, k, float32 output (0/1), bias (0: none, 1: epilogue, 2: fallback; bf16 output),
// autotune (0/1).
void BM_CublasLtBf16Gemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool f32_out = state.range(3) != 0;
  const int64_t bias_mode = f32_out ? 0 : state.range(4);
  const bool autotune = state.range(5) != 0;
  constexpr int64_t kColdBytes = int64_t{256} << 20;
  const int64_t copies = std::max<int64_t>(1, (kColdBytes + 2 * n * k - 1) / (2 * n * k));
  flatfleet::bench::DeviceBf16 x(m * k, 1), w(copies * n * k, 2, 0.05f), bias(n + 1, 3, 0.1f);
  void* y = nullptr;
  void* workspace = nullptr;
  if (!x.ok() || !w.ok() || !bias.ok() ||
      cudaMalloc(&y, m * n * (f32_out ? 4 : 2)) != cudaSuccess ||
      cudaMalloc(&workspace, CublasLtGemm::WorkspaceBytes()) != cudaSuccess) {
    state.SkipWithError("out of device memory");
    cudaFree(y);
    return;
  }
  auto gemm =
      CublasLtGemm::Create(workspace, CublasLtGemm::WorkspaceBytes(), {.autotune = autotune});
  if (!gemm.ok()) {
    state.SkipWithError("CublasLtGemm::Create failed");
  } else {
    Bf16GemmArgs args{.m = m,
                      .n = n,
                      .k = k,
                      .x = x.get(),
                      .w = w.get(),
                      .y = y,
                      .y_type = f32_out ? GemmElementType::kFloat32 : GemmElementType::kBf16};
    // Fallback: elements 1 ... n of the buffer, 2-byte aligned, so not trusted to the epilogue.
    if (bias_mode != 0) args.bias = bias.get() + (bias_mode == 2 ? 1 : 0);
    if (CublasLtGemm::UsesBiasEpilogue(args) != (bias_mode == 1)) {
      state.SkipWithError("the bias takes another path than the one asked for");
    } else if (const auto start = std::chrono::steady_clock::now();
               !(*gemm)->Prepare(args, nullptr).ok() || cudaDeviceSynchronize() != cudaSuccess) {
      state.SkipWithError("Prepare failed");
    } else {
      state.counters["tune_ms"] =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      state.SetLabel((*gemm)->DescribeAlgorithm(args).value_or("(no description)"));
      int64_t copy = 0;
      flatfleet::bench::TimeWithEvents(state, nullptr, [&] {
        args.w = w.get() + (copy++ % copies) * n * k;
        return (*gemm)->Run(args, nullptr).ok();
      });
      flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, 2.0 * n * k);
    }
  }
  cudaFree(y);
  cudaFree(workspace);
}

// Llama-3-8B: fused q/k/v (6144 x 4096), o (4096 x 4096), fused gate+up (28672 x 4096), down
// (4096 x 14336), LM head (128256 x 4096, float32 logits).
void LlamaShapes(benchmark::internal::Benchmark* b) {
  // Each case tuned, then with the heuristic's first choice, next to each other.
  const auto both = [b](int64_t m, int64_t n, int64_t k, int64_t f32_out, int64_t bias) {
    for (int64_t autotune : {1, 0}) b->Args({m, n, k, f32_out, bias, autotune});
  };
  for (int64_t m : {1, 16, 64, 256, 16384}) {
    both(m, 6144, 4096, 0, 0);
    both(m, 4096, 4096, 0, 0);
    both(m, 28672, 4096, 0, 0);
    both(m, 4096, 14336, 0, 0);
    both(m, 128256, 4096, 1, 0);
  }
  // A biased fused q/k/v (Qwen2-style attention bias): epilogue vs fallback.
  for (int64_t m : {1, 16, 2048}) {
    both(m, 6144, 4096, 0, 1);
    both(m, 6144, 4096, 0, 2);
  }
  b->ArgNames({"m", "n", "k", "f32_out", "bias", "autotune"});
}

BENCHMARK(BM_CublasLtBf16Gemm)->UseManualTime()->Apply(LlamaShapes);

}  // namespace
