// Mid-M (m = 16 .. 256) W4A8 linear layers on the real shapes, every candidate in one binary:
//   BM_W4A8MidmGemm        kernel = 0 GemmW4A8Midm kAuto, 1..4 its tiles 64x32, 64x64, 64x128,
//                          128x128, 5 the prefill mma.sync kernel (kPrefillMmaSync), 6
//                          GemmW4A8Prefill kAuto (wgmma on Hopper), 7 GemmW4A8Decode kAuto (m =
//                          16 only), 8 the previous 17..63-row path GemmW4A8 (int8_gemm.h) into
//                          float32 + AddBias (m <= 64); all bf16 output with the fused add;
//   BM_CublasLtBf16Midm    cuBLASLt bf16 (CublasLtGemm, autotuned), the unquantized peer.
// Both are timed cold (the L2 flushed before each call: the weights come from HBM as in a decode
// step) and report weight_TBps (INT4: packed codes + FP16 scales; bf16: 2 n k). BM_W4A8MidmGemm
// also reports x_bf16: cuBLASLt bf16's time on the same shape (measured once per shape in the same
// process, cold) over this kernel's: the target is x_bf16 >= 1.8 at m = 64..256.
// Group size 128, symmetric INT4 weights (the product's 4-bit format).
#include <cuda_runtime.h>

#include <cstdint>
#include <iterator>
#include <map>
#include <tuple>

#include "bench/cuda/bf16_bench_util.h"
#include "bench/cuda/w4a8_bench_util.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/bf16_gemm.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/w4a8_decode_gemm.h"
#include "kernels/cuda/w4a8_midm_gemm.h"
#include "kernels/cuda/w4a8_prefill_gemm.h"

namespace {

using flatfleet::bench::Int4WeightBytes;
using flatfleet::bench::L2Flush;
using flatfleet::bench::TimeCold;
using flatfleet::bench::W4A8Problem;
using flatfleet::cuda::GemmElementType;

// cuBLASLt bf16 (autotuned) on m x n x k, timed cold like the W4A8 kernels: `state`'s iterations
// when given, else 20 calls; mean seconds per call, 0 on failure.
double CublasBf16Seconds(int64_t m, int64_t n, int64_t k, benchmark::State* state) {
  using flatfleet::cuda::CublasLtGemm;
  flatfleet::bench::DeviceBf16 x(m * k, 1), w(n * k, 2, 0.05f);
  const L2Flush flush;
  void* y = nullptr;
  void* workspace = nullptr;
  double seconds = 0;
  if (x.ok() && w.ok() && flush.ok() && cudaMalloc(&y, m * n * 2) == cudaSuccess &&
      cudaMalloc(&workspace, CublasLtGemm::WorkspaceBytes()) == cudaSuccess) {
    auto gemm = CublasLtGemm::Create(workspace, CublasLtGemm::WorkspaceBytes(), {.autotune = true});
    const flatfleet::cuda::Bf16GemmArgs args{.m = m,
                                             .n = n,
                                             .k = k,
                                             .x = x.get(),
                                             .w = w.get(),
                                             .y = y,
                                             .y_type = GemmElementType::kBf16};
    if (gemm.ok() && (*gemm)->Prepare(args, nullptr).ok() &&
        cudaDeviceSynchronize() == cudaSuccess) {
      auto run = [&] { return (*gemm)->Run(args, nullptr).ok(); };
      if (state != nullptr) {
        seconds = TimeCold(*state, flush, run);
      } else if (run() && cudaDeviceSynchronize() == cudaSuccess) {
        cudaEvent_t start, stop;
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
        constexpr int kCalls = 20;
        for (int i = 0; i < kCalls; ++i) {
          flush.Run();
          cudaEventRecord(start, nullptr);
          run();
          cudaEventRecord(stop, nullptr);
          cudaEventSynchronize(stop);
          float ms = 0;
          cudaEventElapsedTime(&ms, start, stop);
          seconds += ms / 1e3 / kCalls;
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
      }
    }
  }
  cudaFree(y);
  cudaFree(workspace);
  return seconds;
}

// The bf16 peer's time per shape, measured once per process.
double CachedBf16Seconds(int64_t m, int64_t n, int64_t k) {
  static std::map<std::tuple<int64_t, int64_t, int64_t>, double> cache;
  const auto key = std::make_tuple(m, n, k);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, CublasBf16Seconds(m, n, k, nullptr)).first;
  return it->second;
}

// Args: m, n, k, kernel (see the file comment).
void BM_W4A8MidmGemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const int64_t kernel = state.range(3);
  using flatfleet::cuda::W4A8MidmKernel;
  constexpr W4A8MidmKernel kMidm[] = {W4A8MidmKernel::kAuto,       W4A8MidmKernel::kMma64x32,
                                      W4A8MidmKernel::kMma64x64,   W4A8MidmKernel::kMma64x128,
                                      W4A8MidmKernel::kMma128x128, W4A8MidmKernel::kPrefillMmaSync};
  if (kernel < 0 || kernel > 8 || (kernel == 7 && m > 16) || (kernel == 8 && m > 64)) {
    state.SkipWithError("unknown kernel argument for this m");
    return;
  }
  const W4A8Problem problem(m, n, k);
  const L2Flush flush;
  float* gemm_out = nullptr;
  if (!problem.ok() || (kernel == 8 && cudaMalloc(&gemm_out, m * n * 4) != cudaSuccess)) {
    state.SkipWithError("out of device memory");
    return;
  }
  double seconds = 0;
  if (kernel < static_cast<int64_t>(std::size(kMidm))) {
    auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8MidmGemm>(m, n, k);
    args.kernel = kMidm[kernel];
    seconds = TimeCold(state, flush, [&] { return GemmW4A8Midm(args, nullptr).ok(); });
  } else if (kernel == 6) {
    const auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8PrefillGemm>(m, n, k);
    seconds = TimeCold(state, flush, [&] { return GemmW4A8Prefill(args, nullptr).ok(); });
  } else if (kernel == 7) {
    const auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8DecodeGemm>(m, n, k);
    seconds = TimeCold(state, flush, [&] { return GemmW4A8Decode(args, nullptr).ok(); });
  } else {
    const flatfleet::bench::W4A8TwoKernelPath path(problem, m, n, k, gemm_out);
    seconds = TimeCold(state, flush, [&] { return path.Run(); });
  }
  cudaFree(gemm_out);
  if (seconds <= 0) return;  // skipped with an error
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, Int4WeightBytes(n, k));
  const double bf16 = CachedBf16Seconds(m, n, k);
  if (bf16 > 0) state.counters["x_bf16"] = bf16 / seconds;
}

// Args: m, n, k. bf16 output, no bias, autotuned.
void BM_CublasLtBf16Midm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  if (CublasBf16Seconds(m, n, k, &state) <= 0) {
    if (!state.error_occurred()) state.SkipWithError("cuBLASLt bf16 failed");
    return;
  }
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, 2.0 * n * k);
}

// Llama-3-8B (and Mixtral-8x7B's experts): fused q/k/v, o, fused gate|up, down; Llama-3-70B: the
// same four.
constexpr int64_t kShapes[][2] = {{6144, 4096},  {4096, 4096}, {28672, 4096}, {4096, 14336},
                                  {10240, 8192}, {8192, 8192}, {57344, 8192}, {8192, 28672}};
constexpr int64_t kRows[] = {16, 32, 64, 128, 256};

void MidmShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kShapes)
    for (int64_t m : kRows) b->Args({m, n, k});
  b->ArgNames({"m", "n", "k"});
}

void MidmShapesByKernel(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kShapes)
    for (int64_t m : kRows)
      for (int64_t kernel = 0; kernel <= 8; ++kernel) {
        if ((kernel == 7 && m > 16) || (kernel == 8 && m > 64)) continue;
        b->Args({m, n, k, kernel});
      }
  b->ArgNames({"m", "n", "k", "kernel"});
}

BENCHMARK(BM_W4A8MidmGemm)->UseManualTime()->MinTime(0.05)->Apply(MidmShapesByKernel);
BENCHMARK(BM_CublasLtBf16Midm)->UseManualTime()->MinTime(0.05)->Apply(MidmShapes);

}  // namespace
