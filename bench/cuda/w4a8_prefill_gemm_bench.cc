// Prefill-sized (m = 64 .. 16384) W4A8 linear layers on the real shapes, five ways in one binary:
//   BM_W4A8PrefillGemm         GemmW4A8Prefill (w4a8_prefill_gemm.h), bf16 output, fused add;
//                              kernel = 0 auto (wgmma on Hopper), 1 wgmma, 2 mma.sync,
//                              3 wgmma 64 x 128 two blocks per SM, 4 wgmma warp-specialised;
//   BM_W4A8FragmentWgmma       GemmW4A8FragmentWgmma (w4a8_fragment_wgmma_gemm.h) over the
//                              fragment layout, bf16 output, fused add; tile = 0 the rule,
//                              else tokens * 10 + parts (642, 644, 1282, 1284); split = 0 the
//                              rule (K split over CTAs up to 256 rows), else as given;
//   BM_W4A8PrefillTwoKernel    the previous path: GemmW4A8 (int8_gemm.h, 64 x 64 mma.sync tiles)
//                              into float32, then AddBias (float32 bias) into bf16 -- the same
//                              bits;
//   BM_CublasLtBf16Prefill     cuBLASLt bf16 (CublasLtGemm, autotuned), the unquantized peer;
//   BM_CublasInt8Prefill       cuBLAS INT8 (cublasGemmEx s8 x s8 -> s32, CUBLAS_COMPUTE_32I):
//                              int32 output, no scales, no epilogue (strictly less work).
// All are compute-bound: reported as TOP/s (2 m n k per call). Timed with CUDA events around each
// call, warm (the operands of one call are read from HBM at most once per tile anyway).
// Group size 128, symmetric INT4 weights (the product's 4-bit format).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

#include "bench/cuda/bf16_bench_util.h"
#include "bench/cuda/w4a8_bench_util.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/bf16_gemm.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/w4a8_fragment_layout.h"
#include "kernels/cuda/w4a8_fragment_wgmma_gemm.h"
#include "kernels/cuda/w4a8_prefill_gemm.h"

namespace {

using flatfleet::cuda::GemmElementType;

constexpr int64_t kGroupSize = flatfleet::bench::kW4A8BenchGroupSize;

using flatfleet::bench::RandomBytes;
using flatfleet::bench::W4A8Problem;

void SetTopCounter(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  state.counters["TOPS"] =
      benchmark::Counter(2.0 * m * n * k * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: m, n, k, kernel (0 auto, 1 wgmma, 2 mma.sync, 3 wgmma 64x128 two per SM,
// 4 wgmma warp-specialised).
void BM_W4A8PrefillGemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  using flatfleet::cuda::W4A8PrefillKernel;
  constexpr W4A8PrefillKernel kKernels[] = {
      W4A8PrefillKernel::kAuto, W4A8PrefillKernel::kWgmmaExperimental,
      W4A8PrefillKernel::kMmaSync128x128, W4A8PrefillKernel::kWgmma64x128TwoPerSm,
      W4A8PrefillKernel::kWgmmaWarpSpecialized};
  if (state.range(3) < 0 || state.range(3) >= static_cast<int64_t>(std::size(kKernels))) {
    state.SkipWithError("unknown kernel argument");
    return;
  }
  const W4A8PrefillKernel kernel = kKernels[state.range(3)];
  const W4A8Problem problem(m, n, k);
  if (!problem.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8PrefillGemm>(m, n, k);
  args.kernel = kernel;
  flatfleet::bench::TimeWithEvents(
      state, nullptr, [&] { return flatfleet::cuda::GemmW4A8Prefill(args, nullptr).ok(); });
  SetTopCounter(state, m, n, k);
}

// Args: m, n, k, tile (0 = the rule; else tokens per tile * 10 + token parts), split (0 = the
// rule).
void BM_W4A8FragmentWgmma(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const W4A8Problem problem(m, n, k);
  void* fragments = nullptr;
  void* fragment_scales = nullptr;
  void* partials = nullptr;
  void* counters = nullptr;
  const int64_t counter_bytes = flatfleet::cuda::W4A8FragmentWgmmaCounterCount(m, n) * 4;
  const int64_t partial_bytes = flatfleet::cuda::W4A8FragmentWgmmaPartialFloats(
                                    m, n, flatfleet::cuda::kW4A8FragmentWgmmaMaxSplit) *
                                4;
  if (!problem.ok() || cudaMalloc(&partials, std::max<int64_t>(partial_bytes, 4)) != cudaSuccess ||
      cudaMalloc(&counters, counter_bytes) != cudaSuccess ||
      cudaMemset(counters, 0, counter_bytes) != cudaSuccess ||
      cudaMalloc(&fragments, flatfleet::cuda::W4A8FragmentWordCount(n, k) * 4) != cudaSuccess ||
      cudaMalloc(&fragment_scales, flatfleet::cuda::W4A8FragmentScaleWordCount(n, k, kGroupSize) *
                                       4) != cudaSuccess) {
    state.SkipWithError("out of device memory");
  } else if (!flatfleet::cuda::PackW4A8Fragments(
                  {.n = n,
                   .k = k,
                   .group_size = kGroupSize,
                   .words = static_cast<const uint32_t*>(problem.w),
                   .scales = static_cast<const uint16_t*>(problem.w_scales)},
                  static_cast<uint32_t*>(fragments), static_cast<uint32_t*>(fragment_scales),
                  nullptr)
                  .ok() ||
             cudaDeviceSynchronize() != cudaSuccess) {
    state.SkipWithError("PackW4A8Fragments failed");
  } else {
    flatfleet::cuda::DeviceW4A8FragmentWgmmaGemm args;
    args.m = m;
    args.n = n;
    args.k = k;
    args.group_size = kGroupSize;
    args.x_codes = static_cast<const int8_t*>(problem.x);
    args.x_scales = static_cast<const uint16_t*>(problem.x_scales);
    args.w_fragments = static_cast<const uint32_t*>(fragments);
    args.w_fragment_scales = static_cast<const uint32_t*>(fragment_scales);
    args.w_has_zero_points = false;
    args.epilogue_add = static_cast<const float*>(problem.add);
    args.y = problem.y;
    args.y_type = GemmElementType::kBf16;
    args.tokens_per_tile = static_cast<int>(state.range(3) / 10);
    args.token_parts = static_cast<int>(state.range(3) % 10);
    args.split = static_cast<int>(state.range(4));
    args.split_partials = static_cast<float*>(partials);
    args.split_counters = static_cast<int32_t*>(counters);
    flatfleet::bench::TimeWithEvents(
        state, nullptr, [&] { return flatfleet::cuda::GemmW4A8FragmentWgmma(args, nullptr).ok(); });
    SetTopCounter(state, m, n, k);
  }
  for (void* p : {fragments, fragment_scales, partials, counters}) cudaFree(p);
}

// Args: m, n, k.
void BM_W4A8PrefillTwoKernel(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const W4A8Problem problem(m, n, k);
  float* gemm_out = nullptr;
  if (!problem.ok() || cudaMalloc(&gemm_out, m * n * 4) != cudaSuccess) {
    state.SkipWithError("out of device memory");
    return;
  }
  const flatfleet::bench::W4A8TwoKernelPath path(problem, m, n, k, gemm_out);
  flatfleet::bench::TimeWithEvents(state, nullptr, [&] { return path.Run(); });
  SetTopCounter(state, m, n, k);
  cudaFree(gemm_out);
}

// Args: m, n, k. bf16 output, no bias, autotuned.
void BM_CublasLtBf16Prefill(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  using flatfleet::cuda::CublasLtGemm;
  flatfleet::bench::DeviceBf16 x(m * k, 1), w(n * k, 2, 0.05f);
  void* y = nullptr;
  void* workspace = nullptr;
  if (!x.ok() || !w.ok() || cudaMalloc(&y, m * n * 2) != cudaSuccess ||
      cudaMalloc(&workspace, CublasLtGemm::WorkspaceBytes()) != cudaSuccess) {
    state.SkipWithError("out of device memory");
    cudaFree(y);
    return;
  }
  auto gemm = CublasLtGemm::Create(workspace, CublasLtGemm::WorkspaceBytes(), {.autotune = true});
  const flatfleet::cuda::Bf16GemmArgs args{
      .m = m, .n = n, .k = k, .x = x.get(), .w = w.get(), .y = y, .y_type = GemmElementType::kBf16};
  if (!gemm.ok() || !(*gemm)->Prepare(args, nullptr).ok() ||
      cudaDeviceSynchronize() != cudaSuccess) {
    state.SkipWithError("CublasLtGemm Create/Prepare failed");
  } else {
    flatfleet::bench::TimeWithEvents(state, nullptr,
                                     [&] { return (*gemm)->Run(args, nullptr).ok(); });
    SetTopCounter(state, m, n, k);
  }
  cudaFree(y);
  cudaFree(workspace);
}

// Args: m, n, k. int32 output, no scales.
void BM_CublasInt8Prefill(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  void* x = RandomBytes(m * k);
  void* w = RandomBytes(n * k);
  void* y = nullptr;
  cublasHandle_t handle = nullptr;
  if (x == nullptr || w == nullptr || cudaMalloc(&y, m * n * 4) != cudaSuccess) {
    state.SkipWithError("out of device memory");
  } else if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    state.SkipWithError("cublasCreate failed");
  } else {
    const int32_t alpha = 1, beta = 0;
    // Row-major Y[m, n] = X[m, k] W[n, k]^T is column-major Y^T[n, m] = W^T(op T) . X^T.
    flatfleet::bench::TimeWithEvents(state, nullptr, [&] {
      return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                          static_cast<int>(m), static_cast<int>(k), &alpha, w, CUDA_R_8I,
                          static_cast<int>(k), x, CUDA_R_8I, static_cast<int>(k), &beta, y,
                          CUDA_R_32I, static_cast<int>(n), CUBLAS_COMPUTE_32I,
                          CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
    });
    SetTopCounter(state, m, n, k);
    cublasDestroy(handle);
  }
  for (void* p : {x, w, y}) cudaFree(p);
}

// Llama-3-8B (and Mixtral-8x7B's experts): fused q/k/v, o, fused gate|up, down; Llama-3-70B: the
// same four.
constexpr int64_t kShapes[][2] = {{6144, 4096},  {4096, 4096}, {28672, 4096}, {4096, 14336},
                                  {10240, 8192}, {8192, 8192}, {57344, 8192}, {8192, 28672}};

void PrefillShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kShapes)
    for (int64_t m : {64, 128, 256, 1024, 4096, 16384}) b->Args({m, n, k});
  b->ArgNames({"m", "n", "k"});
}

// The rule everywhere; both tiles and part counts where the rule could go either way; the rule's
// tile without a split where the rule splits.
void FragmentWgmmaShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kShapes) {
    for (int64_t m : {64, 128, 256, 1024, 4096, 16384}) b->Args({m, n, k, 0, 0});
    for (int64_t m : {64, 128, 256}) {
      for (int64_t tile : {642, 644, 1282, 1284}) b->Args({m, n, k, tile, 0});
      b->Args({m, n, k, 0, 1});
    }
    for (int64_t m : {1024, 4096}) b->Args({m, n, k, 1284, 0});
  }
  b->ArgNames({"m", "n", "k", "tile", "split"});
}

void PrefillShapesByKernel(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kShapes)
    for (int64_t m : {256, 1024, 4096, 16384})
      for (int64_t kernel : {0, 1, 2, 3, 4}) b->Args({m, n, k, kernel});
  b->ArgNames({"m", "n", "k", "kernel"});
}

BENCHMARK(BM_W4A8PrefillGemm)->UseManualTime()->MinTime(0.1)->Apply(PrefillShapesByKernel);
BENCHMARK(BM_W4A8FragmentWgmma)->UseManualTime()->MinTime(0.1)->Apply(FragmentWgmmaShapes);
BENCHMARK(BM_W4A8PrefillTwoKernel)->UseManualTime()->MinTime(0.1)->Apply(PrefillShapes);
BENCHMARK(BM_CublasLtBf16Prefill)->UseManualTime()->MinTime(0.1)->Apply(PrefillShapes);
BENCHMARK(BM_CublasInt8Prefill)->UseManualTime()->MinTime(0.1)->Apply(PrefillShapes);

}  // namespace
