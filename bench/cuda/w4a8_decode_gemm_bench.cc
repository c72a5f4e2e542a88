// Decode-sized (m = 1, 4, 16) W4A8 linear layers on the real shapes, three ways in one binary:
//   BM_W4A8DecodeGemm        GemmW4A8Decode (w4a8_decode_gemm.h), bf16 output, fused add;
//                            kernel = 0 auto, 1 narrow (8 channels per warp), 2 wide (16);
//   BM_W4A8MmaSyncAddBias    today's path: GemmW4A8 (int8_gemm.h, mma.sync tiles) into float32,
//                            then AddBias (float32 bias) into bf16 -- the same result;
//   BM_CublasLtBf16Decode    cuBLASLt bf16 (CublasLtGemm, autotuned), the unquantized peer;
//   BM_W8A8DecodeGemm        GemmW8A8Decode (w8a8_decode_gemm.h), bf16 output, fused add;
//   BM_W8A8MmaSyncAddBias    GemmW8A8 (int8_gemm.h) into float32, then AddBias into bf16;
//   BM_W4A8DecodeSplitK      GemmW4A8Decode: split 0 kAuto (the heuristic's choice), 1 the
//                            narrow kernel (the reference path), 2, 4, 8 kSplitK, on every
//                            Llama-3-8B/70B layer and TP2 half at m = 1, 16;
//   BM_W4A8DecodeStreaming   GemmW4A8Decode: kernel 0 kStreaming, 1 the previous kAuto choice
//                            (split-K or narrow), on the split-K comparison's shapes;
//   BM_CublasInt8Decode      cublasGemmEx s8 x s8 -> s32 on the same shapes (no scales, no
//                            epilogue: strictly less work), the INT8 peer;
//   BM_CublasLtBf16DecodeTP  cuBLASLt bf16 on the same shapes, the bf16 peer.
//   BM_W4A8DecodePipelined   GemmW4A8Decode: kernel 0 kAuto (kPipelined, its channel heuristic),
//                            1 kPipelined with 16 channels per CTA, 2 with 32, 3 the previous kAuto
//                            choice (W4A8DecodePreviousAutoKernel), on every real layer and TP2
//                            half at m = 1, 4, 8, 16; kernel 0 also times cuBLASLt bf16 and cuBLAS
//                            INT8 on the shape in the same process (counters bf16_us, int8_us,
//                            and the speed-ups x_bf16, x_int8 over them; us is this kernel's mean).
//   BM_W4A8FragmentGemm      GemmW4A8Fragment (w4a8_fragment_gemm.h): config 0 = kAuto's
//                            configuration, else 10000 (8 warps per CTA; none: 4) + split * 100
//                            (split 0: the rule's split) + blocks per warp * 10 + ring depth,
//                            on every real layer
//                            and TP2 half; config 0 also times cuBLASLt bf16, cuBLAS INT8 and the
//                            previous W4A8 path (GemmW4A8Decode kAuto up to 16 rows, GemmW4A8Midm
//                            kAuto above) in the same process (bf16_us, int8_us, previous_us and
//                            the speed-ups x_bf16, x_int8, x_previous).
//   BM_W4A8FragmentGemmWarps the same: 4 against 8 warps per CTA at the rule's split, each block
//                            count and ring depth, on five layers at m = 1, 8, 16.
//   BM_W4A8FragmentStaged    the same with the weights through shared-memory stages (bulk
//                            copies): stage counts, chunks per stage and splits.
// All are memory-bound: reported as weight bytes per second (INT4: packed codes + FP16 scales;
// INT8: codes + scales; bf16: 2 n k) and as a fraction of 4.3 TB/s. The L2 is flushed (by reading a
// buffer of twice its size) before every timed call, so the weights come from HBM as in a decode
// step.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "bench/cuda/bf16_bench_util.h"
#include "bench/cuda/w4a8_bench_util.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/bf16_gemm.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/per_device_attribute.h"
#include "kernels/cuda/w4a8_decode_gemm.h"
#include "kernels/cuda/w4a8_fragment_gemm.h"
#include "kernels/cuda/w4a8_fragment_layout.h"
#include "kernels/cuda/w4a8_midm_gemm.h"
#include "kernels/cuda/w8a8_decode_gemm.h"

namespace {

using flatfleet::cuda::GemmElementType;

constexpr int64_t kGroupSize = flatfleet::bench::kW4A8BenchGroupSize;

using flatfleet::bench::ColdMicros;
using flatfleet::bench::Int4WeightBytes;
using flatfleet::bench::L2Flush;
using flatfleet::bench::RandomBytes;
using flatfleet::bench::RandomScales;
using flatfleet::bench::TimeCold;
using flatfleet::bench::W4A8Problem;

// Args: m, n, k, kernel (0 auto, 1 narrow, 2 wide).
void BM_W4A8DecodeGemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  using flatfleet::cuda::W4A8DecodeKernel;
  const W4A8DecodeKernel kernel = state.range(3) == 1   ? W4A8DecodeKernel::kTensorCoreNarrow
                                  : state.range(3) == 2 ? W4A8DecodeKernel::kTensorCoreWide
                                                        : W4A8DecodeKernel::kAuto;
  const W4A8Problem problem(m, n, k);
  const L2Flush flush;
  if (!problem.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8DecodeGemm>(m, n, k);
  args.kernel = kernel;
  TimeCold(state, flush, [&] { return flatfleet::cuda::GemmW4A8Decode(args, nullptr).ok(); });
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, Int4WeightBytes(n, k));
}

// Args: m, n, k.
void BM_W4A8MmaSyncAddBias(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const W4A8Problem problem(m, n, k);
  const L2Flush flush;
  float* gemm_out = nullptr;
  if (!problem.ok() || cudaMalloc(&gemm_out, m * n * 4) != cudaSuccess) {
    state.SkipWithError("out of device memory");
    return;
  }
  const flatfleet::bench::W4A8TwoKernelPath path(problem, m, n, k, gemm_out);
  TimeCold(state, flush, [&] { return path.Run(); });
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, Int4WeightBytes(n, k));
  cudaFree(gemm_out);
}

// Args: m, n, k. bf16 output, no bias, autotuned.
void BM_CublasLtBf16Decode(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  using flatfleet::cuda::CublasLtGemm;
  flatfleet::bench::DeviceBf16 x(m * k, 1), w(n * k, 2, 0.05f);
  const L2Flush flush;
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
    TimeCold(state, flush, [&] { return (*gemm)->Run(args, nullptr).ok(); });
    flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, 2.0 * n * k);
  }
  cudaFree(y);
  cudaFree(workspace);
}

// The operands of one W8A8 problem, device memory.
struct W8A8Problem {
  W8A8Problem(int64_t m, int64_t n, int64_t k)
      : x(RandomBytes(m * k)),
        x_scales(RandomScales(m)),
        w(RandomBytes(n * k)),
        w_scales(RandomScales(n)),
        add(RandomScales(2 * n)) {
    cudaMalloc(&y, m * n * 2);
    cudaMalloc(&gemm_out, m * n * 4);
  }
  ~W8A8Problem() {
    for (void* p : {x, x_scales, w, w_scales, add, y, gemm_out}) cudaFree(p);
  }
  W8A8Problem(const W8A8Problem&) = delete;
  W8A8Problem& operator=(const W8A8Problem&) = delete;
  bool ok() const { return x && x_scales && w && w_scales && add && y && gemm_out; }

  void* x;
  void* x_scales;
  void* w;
  void* w_scales;
  void* add;
  void* y = nullptr;
  void* gemm_out = nullptr;
};

// Args: m, n, k.
void BM_W8A8DecodeGemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const W8A8Problem problem(m, n, k);
  const L2Flush flush;
  if (!problem.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  const flatfleet::cuda::DeviceW8A8DecodeGemm args{
      .m = m,
      .n = n,
      .k = k,
      .x_codes = static_cast<const int8_t*>(problem.x),
      .x_scales = static_cast<const uint16_t*>(problem.x_scales),
      .w_codes = static_cast<const int8_t*>(problem.w),
      .w_scales = static_cast<const uint16_t*>(problem.w_scales),
      .epilogue_add = static_cast<const float*>(problem.add),
      .y = problem.y,
      .y_type = GemmElementType::kBf16};
  TimeCold(state, flush, [&] { return flatfleet::cuda::GemmW8A8Decode(args, nullptr).ok(); });
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, n * k + 2.0 * n);
}

// Args: m, n, k.
void BM_W8A8MmaSyncAddBias(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const W8A8Problem problem(m, n, k);
  const L2Flush flush;
  if (!problem.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  auto* gemm_out = static_cast<float*>(problem.gemm_out);
  const flatfleet::cuda::DeviceW8A8Gemm gemm{
      .m = m,
      .n = n,
      .k = k,
      .x_codes = static_cast<const int8_t*>(problem.x),
      .x_scales = static_cast<const uint16_t*>(problem.x_scales),
      .w_codes = static_cast<const int8_t*>(problem.w),
      .w_scales = static_cast<const uint16_t*>(problem.w_scales),
      .y = gemm_out};
  const flatfleet::cuda::DeviceBiasAdd bias{.rows = m,
                                            .cols = n,
                                            .x = gemm_out,
                                            .bias = problem.add,
                                            .bias_type = GemmElementType::kFloat32,
                                            .y = problem.y,
                                            .y_type = GemmElementType::kBf16};
  TimeCold(state, flush, [&] {
    return flatfleet::cuda::GemmW8A8(gemm, nullptr).ok() &&
           flatfleet::cuda::AddBias(bias, nullptr).ok();
  });
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, n * k + 2.0 * n);
}

// Args: m, n, k, split (0: kAuto, what the engine runs; 1: the narrow kernel, the reference
// path; 2, 4, 8: kSplitK forced). The counter `split` says which split ran (1: narrow), unless
// `streaming` is 1: kAuto ran kStreaming.
void BM_W4A8DecodeSplitK(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const int split = static_cast<int>(state.range(3));
  using flatfleet::cuda::W4A8DecodeKernel;
  const W4A8Problem problem(m, n, k);
  const L2Flush flush;
  if (!problem.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8DecodeGemm>(m, n, k);
  args.kernel = split == 0   ? W4A8DecodeKernel::kAuto
                : split == 1 ? W4A8DecodeKernel::kTensorCoreNarrow
                             : W4A8DecodeKernel::kSplitK;
  args.split = split >= 2 ? split : 0;
  TimeCold(state, flush, [&] { return flatfleet::cuda::GemmW4A8Decode(args, nullptr).ok(); });
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, Int4WeightBytes(n, k));
  int device = 0, sm_count = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  state.counters["split"] =
      split == 0 ? flatfleet::cuda::ChooseW4A8DecodeSplit(m, n, k, kGroupSize, sm_count) : split;
  // kAuto runs the streaming kernel where it can (then `split` is what the old rule would take).
  state.counters["streaming"] =
      split == 0 && flatfleet::cuda::ChooseW4A8DecodeAutoKernel(m, n, k, kGroupSize, sm_count) ==
                        W4A8DecodeKernel::kStreaming
          ? 1
          : 0;
}

// Args: m, n, k, kernel (0: kStreaming, what kAuto runs on these shapes; 1: the previous kAuto
// choice, split-K where ChooseW4A8DecodeSplit says 2 or more, else the narrow kernel, in the same
// run for the ratio). The counter `streaming` says which ran.
void BM_W4A8DecodeStreaming(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool streaming = state.range(3) == 0;
  using flatfleet::cuda::W4A8DecodeKernel;
  const W4A8Problem problem(m, n, k);
  const L2Flush flush;
  if (!problem.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  int device = 0, sm_count = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  const int split = flatfleet::cuda::ChooseW4A8DecodeSplit(m, n, k, kGroupSize, sm_count);
  auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8DecodeGemm>(m, n, k);
  args.kernel = streaming    ? W4A8DecodeKernel::kStreaming
                : split >= 2 ? W4A8DecodeKernel::kSplitK
                             : W4A8DecodeKernel::kTensorCoreNarrow;
  args.split = split >= 2 ? split : 0;
  TimeCold(state, flush, [&] { return flatfleet::cuda::GemmW4A8Decode(args, nullptr).ok(); });
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, Int4WeightBytes(n, k));
  state.counters["streaming"] = streaming ? 1 : 0;
}

// cuBLASLt bf16 (autotuned, bf16 output) on an m x n x k problem: mean cold microseconds, -1 on
// failure.
double CublasLtBf16Micros(const L2Flush& flush, int64_t m, int64_t n, int64_t k) {
  using flatfleet::cuda::CublasLtGemm;
  flatfleet::bench::DeviceBf16 x(m * k, 1), w(n * k, 2, 0.05f);
  void* y = nullptr;
  void* workspace = nullptr;
  double micros = -1;
  if (x.ok() && w.ok() && cudaMalloc(&y, m * n * 2) == cudaSuccess &&
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
      micros = ColdMicros(flush, [&] { return (*gemm)->Run(args, nullptr).ok(); });
    }
  }
  cudaFree(y);
  cudaFree(workspace);
  return micros;
}

// cuBLAS s8 x s8 -> s32 (no scales, no epilogue) on an m x n x k problem: mean cold
// microseconds, -1 on failure.
double CublasInt8Micros(const L2Flush& flush, int64_t m, int64_t n, int64_t k);

// Args: m, n, k, kernel (0 kAuto, 1 kPipelined 16 channels, 2 kPipelined 32 channels, 3 the
// previous kAuto choice). kernel 0 also measures the bf16 and INT8 peers (see the file comment).
void BM_W4A8DecodePipelined(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const int64_t which = state.range(3);
  using flatfleet::cuda::W4A8DecodeKernel;
  const L2Flush flush;
  int device = 0, sm_count = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  // The peers first, each with its own buffers (freed before the W4A8 operands are made).
  double bf16_us = -1, int8_us = -1;
  if (which == 0) {
    bf16_us = CublasLtBf16Micros(flush, m, n, k);
    int8_us = CublasInt8Micros(flush, m, n, k);
  }
  const W4A8Problem problem(m, n, k);
  if (!problem.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  const W4A8DecodeKernel kernel =
      which == 0   ? W4A8DecodeKernel::kAuto
      : which <= 2 ? W4A8DecodeKernel::kPipelined
                   : flatfleet::cuda::W4A8DecodePreviousAutoKernel(m, n, k, kGroupSize, sm_count);
  auto args = problem.FusedBf16Operands<flatfleet::cuda::DeviceW4A8DecodeGemm>(m, n, k);
  args.kernel = kernel;
  args.split = 0;
  args.pipelined_channels = which == 1 ? 16 : which == 2 ? 32 : 0;
  auto launch = [&] { return flatfleet::cuda::GemmW4A8Decode(args, nullptr).ok(); };
  TimeCold(state, flush, launch);
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, Int4WeightBytes(n, k));
  state.counters["kernel_value"] = static_cast<double>(kernel);  // the W4A8DecodeKernel enum
  state.counters["channels"] = which == 1   ? 16
                               : which == 2 ? 32
                               : which == 0
                                   ? flatfleet::cuda::ChooseW4A8PipelinedChannels(m, n, sm_count)
                                   : 0;
  if (which == 0) {
    const double us = ColdMicros(flush, launch);
    state.counters["us"] = us;
    state.counters["bf16_us"] = bf16_us;
    state.counters["int8_us"] = int8_us;
    state.counters["x_bf16"] = us > 0 && bf16_us > 0 ? bf16_us / us : 0;
    state.counters["x_int8"] = us > 0 && int8_us > 0 ? int8_us / us : 0;
  }
}

// Args: m, n, k. int32 output, no scales: cuBLAS's INT8 GEMM reads 1 byte per weight.
void BM_CublasInt8Decode(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  void* x = RandomBytes(m * k);
  void* w = RandomBytes(n * k);
  void* y = nullptr;
  cudaMalloc(&y, m * n * 4);
  const L2Flush flush;
  cublasHandle_t handle = nullptr;
  if (x == nullptr || w == nullptr || y == nullptr) {
    state.SkipWithError("out of device memory");
  } else if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    state.SkipWithError("cublasCreate failed");
  } else {
    const int32_t alpha = 1, beta = 0;
    // Row-major Y[m, n] = X[m, k] W[n, k]^T is column-major Y^T[n, m] = W^T(op T) . X^T.
    TimeCold(state, flush, [&] {
      return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                          static_cast<int>(m), static_cast<int>(k), &alpha, w, CUDA_R_8I,
                          static_cast<int>(k), x, CUDA_R_8I, static_cast<int>(k), &beta, y,
                          CUDA_R_32I, static_cast<int>(n), CUBLAS_COMPUTE_32I,
                          CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
    });
    flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, 1.0 * n * k);
    cublasDestroy(handle);
  }
  for (void* p : {x, w, y}) cudaFree(p);
}

double CublasInt8Micros(const L2Flush& flush, int64_t m, int64_t n, int64_t k) {
  void* x = RandomBytes(m * k);
  void* w = RandomBytes(n * k);
  void* y = nullptr;
  cudaMalloc(&y, m * n * 4);
  cublasHandle_t handle = nullptr;
  double micros = -1;
  if (x != nullptr && w != nullptr && y != nullptr &&
      cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS) {
    const int32_t alpha = 1, beta = 0;
    micros = ColdMicros(flush, [&] {
      return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                          static_cast<int>(m), static_cast<int>(k), &alpha, w, CUDA_R_8I,
                          static_cast<int>(k), x, CUDA_R_8I, static_cast<int>(k), &beta, y,
                          CUDA_R_32I, static_cast<int>(n), CUBLAS_COMPUTE_32I,
                          CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
    });
    cublasDestroy(handle);
  }
  for (void* p : {x, w, y}) cudaFree(p);
  return micros;
}

// Llama-3-8B: fused q/k/v, o, fused gate|up, down; Llama-3-70B: the same four.
constexpr int64_t kShapes[][2] = {{6144, 4096},  {4096, 4096}, {28672, 4096}, {4096, 14336},
                                  {10240, 8192}, {8192, 8192}, {57344, 8192}, {8192, 28672}};

void DecodeShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kShapes)
    for (int64_t m : {1, 4, 16}) b->Args({m, n, k});
  b->ArgNames({"m", "n", "k"});
}

void DecodeShapesByKernel(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kShapes)
    for (int64_t m : {1, 4, 16})
      for (int64_t kernel : {0, 1, 2}) b->Args({m, n, k, kernel});
  b->ArgNames({"m", "n", "k", "kernel"});
}

// The split-K comparison: every Llama-3-8B / 70B layer (Mixtral-8x7B's are the 8B shapes) and
// TP2 half, at m = 1 and 16.
constexpr int64_t kSplitShapes[][2] = {
    {6144, 4096},  {4096, 4096}, {28672, 4096}, {4096, 14336},   // 8B TP1
    {3072, 4096},  {4096, 2048}, {14336, 4096}, {4096, 7168},    // 8B TP2
    {10240, 8192}, {8192, 8192}, {57344, 8192}, {8192, 28672},   // 70B TP1
    {5120, 8192},  {8192, 4096}, {28672, 8192}, {8192, 14336}};  // 70B TP2

void SplitShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kSplitShapes)
    for (int64_t m : {1, 16}) b->Args({m, n, k});
  b->ArgNames({"m", "n", "k"});
}

void SplitShapesBySplit(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kSplitShapes)
    for (int64_t m : {1, 16})
      for (int64_t split : {1, 0, 2, 4, 8}) b->Args({m, n, k, split});
  b->ArgNames({"m", "n", "k", "split"});
}

void SplitShapesByStreaming(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kSplitShapes)
    for (int64_t m : {1, 16})
      for (int64_t kernel : {0, 1}) b->Args({m, n, k, kernel});
  b->ArgNames({"m", "n", "k", "kernel"});
}

void PipelinedShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kSplitShapes)
    for (int64_t m : {1, 4, 8, 16})
      for (int64_t kernel : {0, 1, 2, 3}) b->Args({m, n, k, kernel});
  b->ArgNames({"m", "n", "k", "kernel"});
}

// Args: m, n, k, config (0: kAuto's configuration; else 100000 * weight stages (0: the register
// ring) + 10000 for 8 warps per CTA + split * 100 (0: the rule's split) + blocks per warp * 10 +
// ring depth; plus 1000000: through the zero-point path). See the file comment.
void BM_W4A8FragmentGemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  // 1000000 + config: the same configuration through the zero-point path (the operands are
  // symmetric; every other run tells the kernel so).
  const bool zero_point_path = state.range(3) >= 1000000;
  const int64_t which = state.range(3) % 1000000;
  const bool with_peers = state.range(3) == 0;
  namespace cuda = flatfleet::cuda;
  const L2Flush flush;
  double bf16_us = -1, int8_us = -1, previous_us = -1;
  if (with_peers) {
    bf16_us = CublasLtBf16Micros(flush, m, n, k);
    int8_us = CublasInt8Micros(flush, m, n, k);
  }
  const W4A8Problem problem(m, n, k);
  void* fragments = nullptr;
  void* fragment_scales = nullptr;
  void* partials = nullptr;
  void* counters = nullptr;
  const int64_t partial_floats = cuda::W4A8FragmentPartialFloats(m, n, cuda::kW4A8FragmentMaxSplit);
  const bool allocated =
      problem.ok() &&
      cudaMalloc(&fragments, cuda::W4A8FragmentWordCount(n, k) * 4) == cudaSuccess &&
      cudaMalloc(&fragment_scales, cuda::W4A8FragmentScaleWordCount(n, k, kGroupSize) * 4) ==
          cudaSuccess &&
      cudaMalloc(&partials, partial_floats * 4) == cudaSuccess &&
      cudaMalloc(&counters, cuda::W4A8FragmentCounterCount(n) * 4) == cudaSuccess &&
      cudaMemset(counters, 0, cuda::W4A8FragmentCounterCount(n) * 4) == cudaSuccess;
  auto free_all = [&] {
    for (void* p : {fragments, fragment_scales, partials, counters}) cudaFree(p);
  };
  if (!allocated) {
    free_all();
    state.SkipWithError("out of device memory");
    return;
  }
  if (!cuda::PackW4A8Fragments({.n = n,
                                .k = k,
                                .group_size = kGroupSize,
                                .words = static_cast<const uint32_t*>(problem.w),
                                .scales = static_cast<const uint16_t*>(problem.w_scales)},
                               static_cast<uint32_t*>(fragments),
                               static_cast<uint32_t*>(fragment_scales), nullptr)
           .ok()) {
    free_all();
    state.SkipWithError("repack failed");
    return;
  }
  if (with_peers) {  // the previous path on the same operands
    if (m <= 16) {
      auto previous = problem.FusedBf16Operands<cuda::DeviceW4A8DecodeGemm>(m, n, k);
      previous_us = ColdMicros(flush, [&] { return cuda::GemmW4A8Decode(previous, nullptr).ok(); });
    } else {
      auto previous = problem.FusedBf16Operands<cuda::DeviceW4A8MidmGemm>(m, n, k);
      previous_us = ColdMicros(flush, [&] { return cuda::GemmW4A8Midm(previous, nullptr).ok(); });
    }
  }
  cuda::DeviceW4A8FragmentGemm args;
  args.m = m;
  args.n = n;
  args.k = k;
  args.group_size = kGroupSize;
  args.x_codes = static_cast<const int8_t*>(problem.x);
  args.x_scales = static_cast<const uint16_t*>(problem.x_scales);
  args.w_fragments = static_cast<const uint32_t*>(fragments);
  args.w_fragment_scales = static_cast<const uint32_t*>(fragment_scales);
  args.w_has_zero_points = zero_point_path;
  args.epilogue_add = static_cast<const float*>(problem.add);
  args.y = problem.y;
  args.y_type = GemmElementType::kBf16;
  args.split_partials = static_cast<float*>(partials);
  args.split_counters = static_cast<int32_t*>(counters);
  if (which != 0) {
    args.config = {.split = static_cast<int>(which % 10000 / 100),
                   .blocks_per_warp = static_cast<int>(which / 10 % 10),
                   .ring_depth = static_cast<int>(which % 10),
                   .warps_per_cta = which % 100000 >= 10000 ? 8 : 4,
                   .weight_stages = static_cast<int>(which / 100000)};
    if (args.config.split == 99) {  // the staged path's split rule
      args.config.split =
          cuda::W4A8FragmentStagedSplit(n, k, kGroupSize, flatfleet::cuda::CurrentDeviceSmCount());
    } else if (args.config.split == 0) {  // the rule's split, the other fields as forced
      cuda::DeviceW4A8FragmentGemm rule = args;
      rule.config = {.split = 0};
      args.config.split = cuda::ResolveW4A8FragmentConfig(rule).split;
    }
  }
  const cuda::W4A8FragmentConfig config = cuda::ResolveW4A8FragmentConfig(args);
  auto launch = [&] { return cuda::GemmW4A8Fragment(args, nullptr).ok(); };
  const double seconds = TimeCold(state, flush, launch);
  flatfleet::bench::SetGemmCounters(state, 2.0 * m * n * k, Int4WeightBytes(n, k));
  state.counters["split"] = config.split;
  state.counters["blocks"] = config.blocks_per_warp;
  state.counters["depth"] = config.ring_depth;
  state.counters["warps"] = config.warps_per_cta;
  state.counters["stages"] = config.weight_stages;
  state.counters["zero_point_path"] = zero_point_path;
  const double us = seconds * 1e6;
  state.counters["us"] = us;
  if (with_peers) {
    state.counters["bf16_us"] = bf16_us;
    state.counters["int8_us"] = int8_us;
    state.counters["previous_us"] = previous_us;
    state.counters["x_bf16"] = us > 0 && bf16_us > 0 ? bf16_us / us : 0;
    state.counters["x_int8"] = us > 0 && int8_us > 0 ? int8_us / us : 0;
    state.counters["x_previous"] = us > 0 && previous_us > 0 ? previous_us / us : 0;
  }
  free_all();
}

void FragmentShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kSplitShapes) {
    for (int64_t m : {1, 4, 8, 16, 32}) b->Args({m, n, k, 0});
    for (int64_t m : {1, 16, 32})
      for (int64_t config : {124, 224, 424, 824, 1624, 414, 814, 1614, 418, 818, 1618})
        if (m <= 16 || config / 10 % 10 == 1) b->Args({m, n, k, config});
  }
  b->ArgNames({"m", "n", "k", "config"});
}

// 4 against 8 warps per CTA at the rule's split: codes 14, 24, 18 and 10014, 10024, 10018.
void FragmentWarpShapes(benchmark::internal::Benchmark* b) {
  constexpr int64_t kShapes[][2] = {
      {8192, 8192}, {57344, 8192}, {8192, 28672}, {4096, 4096}, {14336, 4096}};
  for (const auto& [n, k] : kShapes)
    for (int64_t m : {1, 8, 16})
      for (int64_t config : {14, 24, 18, 10014, 10024, 10018}) b->Args({m, n, k, config});
  b->ArgNames({"m", "n", "k", "config"});
}

// The shared-memory weight stages against the register ring (config 0 and its peers in the same
// process): stage counts and chunks per stage at the rule's split on every layer at m = 1, 8, 16,
// the rule and 2 stages of 8 chunks also through the zero-point path; the split swept at m = 1
// for 2 stages of 8 chunks.
void FragmentStagedShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kSplitShapes) {
    for (int64_t m : {1, 8, 16}) {
      for (int64_t config : {1000000, 1200018, 200018, 300018, 200014, 300014, 400014, 600014,
                             210018, 210014, 310014}) {
        b->Args({m, n, k, config});
      }
    }
    for (int64_t config : {200118, 200218, 200418, 200818, 201618}) b->Args({1, n, k, config});
  }
  b->ArgNames({"m", "n", "k", "config"});
}

// The ring and the staged path at W4A8FragmentStagedSplit (split code 99) against the rule
// (config 0 with its peers), at every row count the fragment GEMM takes: whether one split per
// layer can serve every m (a row's result must not depend on the batch).
void FragmentStagedSplitShapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : kSplitShapes) {
    for (int64_t m : {1, 8, 16, 32}) {
      b->Args({m, n, k, 0});
      for (int64_t config : {9924, 9914, 9918, 209918, 209914, 219914, 219918}) {
        b->Args({m, n, k, config});
      }
    }
  }
  b->ArgNames({"m", "n", "k", "config"});
}

BENCHMARK(BM_W4A8FragmentGemm)->UseManualTime()->MinTime(0.02)->Apply(FragmentShapes);
BENCHMARK(BM_W4A8FragmentGemm)
    ->Name("BM_W4A8FragmentStagedSplit")
    ->UseManualTime()
    ->MinTime(0.02)
    ->Apply(FragmentStagedSplitShapes);
BENCHMARK(BM_W4A8FragmentGemm)
    ->Name("BM_W4A8FragmentStaged")
    ->UseManualTime()
    ->MinTime(0.02)
    ->Apply(FragmentStagedShapes);
BENCHMARK(BM_W4A8FragmentGemm)
    ->Name("BM_W4A8FragmentGemmWarps")
    ->UseManualTime()
    ->MinTime(0.02)
    ->Apply(FragmentWarpShapes);
BENCHMARK(BM_W4A8DecodePipelined)->UseManualTime()->MinTime(0.1)->Apply(PipelinedShapes);
BENCHMARK(BM_W4A8DecodeSplitK)->UseManualTime()->MinTime(0.1)->Apply(SplitShapesBySplit);
BENCHMARK(BM_W4A8DecodeStreaming)->UseManualTime()->MinTime(0.1)->Apply(SplitShapesByStreaming);
BENCHMARK(BM_CublasInt8Decode)->UseManualTime()->MinTime(0.1)->Apply(SplitShapes);
BENCHMARK(BM_CublasLtBf16Decode)
    ->Name("BM_CublasLtBf16DecodeTP")
    ->UseManualTime()
    ->MinTime(0.1)
    ->Apply(SplitShapes);
BENCHMARK(BM_W4A8DecodeGemm)->UseManualTime()->MinTime(0.1)->Apply(DecodeShapesByKernel);
BENCHMARK(BM_W4A8MmaSyncAddBias)->UseManualTime()->MinTime(0.1)->Apply(DecodeShapes);
BENCHMARK(BM_CublasLtBf16Decode)->UseManualTime()->MinTime(0.1)->Apply(DecodeShapes);
BENCHMARK(BM_W8A8DecodeGemm)->UseManualTime()->MinTime(0.1)->Apply(DecodeShapes);
BENCHMARK(BM_W8A8MmaSyncAddBias)->UseManualTime()->MinTime(0.1)->Apply(DecodeShapes);

}  // namespace
