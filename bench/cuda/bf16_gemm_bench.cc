// bf16 linear layers through CublasLtGemm (kernels/cuda/bf16_gemm.h) on Llama-3-8B's shapes.
// Decode (M = 1, 16, 64) is bound by streaming the weights: reported as weight bytes per second
// and as a fraction of 4.3 TB/s. Prefill (M = 16384) is bound by the tensor cores: TFLOP/s
// (2 M N K per call). The LM head writes float32 logits; the other layers bf16. Iterations cycle
// through enough copies of the weights (>= 256 MiB) that they come from HBM, not the 50 MB L2.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "bench/cuda/bf16_bench_util.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/bf16_gemm.h"

namespace {

using flatfleet::cuda::Bf16GemmArgs;
using flatfleet::cuda::CublasLtGemm;
using flatfleet::cuda::GemmElementType;

// Args: m, n, k, float32 output (0/1).
void BM_CublasLtBf16Gemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool f32_out = state.range(3) != 0;
  constexpr int64_t kColdBytes = int64_t{256} << 20;
  const int64_t copies = std::max<int64_t>(1, (kColdBytes + 2 * n * k - 1) / (2 * n * k));
  flatfleet::bench::DeviceBf16 x(m * k, 1), w(copies * n * k, 2, 0.05f);
  void* y = nullptr;
  void* workspace = nullptr;
  if (!x.ok() || !w.ok() || cudaMalloc(&y, m * n * (f32_out ? 4 : 2)) != cudaSuccess ||
      cudaMalloc(&workspace, CublasLtGemm::WorkspaceBytes()) != cudaSuccess) {
    state.SkipWithError("out of device memory");
    cudaFree(y);
    return;
  }
  auto gemm = CublasLtGemm::Create(workspace, CublasLtGemm::WorkspaceBytes());
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
    int64_t copy = 0;
    flatfleet::bench::TimeWithEvents(state, nullptr, [&] {
      args.w = w.get() + (copy++ % copies) * n * k;
      return (*gemm)->Run(args, nullptr).ok();
    });
    flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, 2.0 * n * k);
  }
  cudaFree(y);
  cudaFree(workspace);
}

// Llama-3-8B: fused q/k/v (6144 x 4096), o (4096 x 4096), fused gate+up (28672 x 4096), down
// (4096 x 14336), LM head (128256 x 4096, float32 logits).
void LlamaShapes(benchmark::internal::Benchmark* b) {
  for (int64_t m : {1, 16, 64, 16384}) {
    b->Args({m, 6144, 4096, 0});
    b->Args({m, 4096, 4096, 0});
    b->Args({m, 28672, 4096, 0});
    b->Args({m, 4096, 14336, 0});
    b->Args({m, 128256, 4096, 1});
  }
  b->ArgNames({"m", "n", "k", "f32_out"});
}

BENCHMARK(BM_CublasLtBf16Gemm)->UseManualTime()->Apply(LlamaShapes);

}  // namespace
