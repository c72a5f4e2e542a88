// INT8 tensor-core GEMMs: W8A8 and W4A8 (group 128) next to cuBLAS INT8 (cublasGemmEx,
// s8 x s8 -> s32, CUBLAS_COMPUTE_32I) on the same shapes. Reports TOP/s (2 m n k per call) and,
// for the memory-bound decode shapes, the bytes moved per second (weights + activations +
// scales + outputs, each once). Timed with CUDA events around each launch.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "kernels/cuda/int8_cublaslt_gemm.h"
#include "kernels/cuda/int8_dequant_epilogue.h"
#include "kernels/cuda/int8_gemm.h"

namespace {

// Device buffer filled with pseudo-random bytes (xorshift on the host: cheap for 200+ MB).
class RandomDeviceBytes {
 public:
  RandomDeviceBytes(size_t bytes, uint32_t seed, uint8_t mask = 0xff, uint8_t add = 0) {
    std::vector<uint8_t> host(bytes);
    uint32_t state = seed | 1u;
    for (auto& b : host) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      b = static_cast<uint8_t>(((state >> 11) & mask) + add);
    }
    if (cudaMalloc(&pointer_, bytes) == cudaSuccess) {
      cudaMemcpy(pointer_, host.data(), bytes, cudaMemcpyHostToDevice);
    } else {
      pointer_ = nullptr;
    }
  }
  ~RandomDeviceBytes() { cudaFree(pointer_); }
  RandomDeviceBytes(const RandomDeviceBytes&) = delete;
  RandomDeviceBytes& operator=(const RandomDeviceBytes&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(pointer_);
  }

 private:
  void* pointer_ = nullptr;
};

bool HasGpu(benchmark::State& state) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no GPU");
    return false;
  }
  return true;
}

// Times `launch` with CUDA events per iteration; returns false (and marks the state) on error.
template <typename Launch>
void TimeLaunches(benchmark::State& state, Launch launch) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  if (!launch()) {  // warm-up, and the error check
    state.SkipWithError("launch failed");
  } else {
    for (auto _ : state) {
      cudaEventRecord(start);
      launch();
      cudaEventRecord(stop);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      state.SetIterationTime(ms / 1e3);
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

void SetCounters(benchmark::State& state, int64_t m, int64_t n, int64_t k, double bytes) {
  state.counters["TOP"] =
      benchmark::Counter(2.0 * m * n * k * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// FP16 scales in [0.5, 1) (bit patterns 0x38xx..0x3bxx): positive and finite.
constexpr uint8_t kScaleHighMask = 0x03, kScaleHighBase = 0x38;

void BM_W8A8(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  RandomDeviceBytes x(m * k, 1, 0xff), w(n * k, 2, 0xff);
  RandomDeviceBytes xs(m * 2, 3, kScaleHighMask, kScaleHighBase),
      ws(n * 2, 4, kScaleHighMask, kScaleHighBase);
  RandomDeviceBytes y(m * n * 4, 5);
  const flatfleet::cuda::DeviceW8A8Gemm args{.m = m,
                                             .n = n,
                                             .k = k,
                                             .x_codes = x.as<int8_t>(),
                                             .x_scales = xs.as<uint16_t>(),
                                             .w_codes = w.as<int8_t>(),
                                             .w_scales = ws.as<uint16_t>(),
                                             .y = y.as<float>()};
  TimeLaunches(state, [&] { return flatfleet::cuda::GemmW8A8(args, nullptr).ok(); });
  SetCounters(state, m, n, k, m * k + n * k + 2.0 * (m + n) + 4.0 * m * n);
}

void BM_W4A8(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const int64_t group_size = 128, groups = k / group_size;
  RandomDeviceBytes x(m * k, 1, 0xff), w(n * k / 2, 2, 0xff);
  RandomDeviceBytes xs(m * 2, 3, kScaleHighMask, kScaleHighBase),
      ws(n * groups * 2, 4, kScaleHighMask, kScaleHighBase);
  RandomDeviceBytes y(m * n * 4, 5);
  const flatfleet::cuda::DeviceW4A8Gemm args{.m = m,
                                             .n = n,
                                             .k = k,
                                             .group_size = group_size,
                                             .x_codes = x.as<int8_t>(),
                                             .x_scales = xs.as<uint16_t>(),
                                             .w_words = w.as<uint32_t>(),
                                             .w_scales = ws.as<uint16_t>(),
                                             .y = y.as<float>()};
  TimeLaunches(state, [&] { return flatfleet::cuda::GemmW4A8(args, nullptr).ok(); });
  SetCounters(state, m, n, k, m * k + n * k / 2.0 + 2.0 * (m + n * groups) + 4.0 * m * n);
}

// The baseline: int32 output, no scales (cuBLAS has no per-token x per-channel INT8 epilogue in
// cublasGemmEx), so it does strictly less work than BM_W8A8.
void BM_CublasInt8(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  RandomDeviceBytes x(m * k, 1), w(n * k, 2), y(m * n * 4, 5);
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    state.SkipWithError("cublasCreate failed");
    return;
  }
  const int32_t alpha = 1, beta = 0;
  // Row-major Y[m, n] = X[m, k] W[n, k]^T is column-major Y^T[n, m] = W^T(op T) . X^T.
  TimeLaunches(state, [&] {
    return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                        static_cast<int>(k), &alpha, w.as<int8_t>(), CUDA_R_8I, static_cast<int>(k),
                        x.as<int8_t>(), CUDA_R_8I, static_cast<int>(k), &beta, y.as<int32_t>(),
                        CUDA_R_32I, static_cast<int>(n), CUBLAS_COMPUTE_32I,
                        CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
  });
  SetCounters(state, m, n, k, m * k + n * k + 4.0 * m * n);
  cublasDestroy(handle);
}

// What the engine runs for a W8A8 layer's prefill (cuda_quantized_linear.h): cuBLASLt's IMMA
// int32 sums, then the dequantising epilogue to bf16 (scales 1.0 in FP16, no add).
void BM_CublasLtInt8WithEpilogue(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  RandomDeviceBytes x(m * k, 1), w(n * k, 2), sums(m * n * 4, 5), y(m * n * 2, 6);
  RandomDeviceBytes x_scales(m * 2, 7, 0x00, 0x3c), w_scales(n * 2, 8, 0x00, 0x3c);
  RandomDeviceBytes workspace(32 << 20, 9);
  auto gemm = flatfleet::cuda::CublasLtInt8Gemm::Create(workspace.as<void>(), 32 << 20);
  if (!gemm.ok()) {
    state.SkipWithError(std::string(gemm.status().message()).c_str());
    return;
  }
  const flatfleet::cuda::Int8GemmArgs args{
      .m = m, .n = n, .k = k, .x = x.as<int8_t>(), .w = w.as<int8_t>(), .sums = sums.as<int32_t>()};
  flatfleet::cuda::DeviceInt8DequantEpilogue epilogue;
  epilogue.rows = m;
  epilogue.cols = n;
  epilogue.sums = sums.as<int32_t>();
  epilogue.x_scales = x_scales.as<uint16_t>();
  epilogue.w_scales = w_scales.as<uint16_t>();
  epilogue.y = y.as<void>();
  if (const absl::Status first = (*gemm)->Run(args, nullptr); !first.ok()) {
    state.SkipWithError(std::string(first.message()).c_str());
    return;
  }
  TimeLaunches(state, [&] {
    return (*gemm)->Run(args, nullptr).ok() &&
           flatfleet::cuda::Int8DequantEpilogue(epilogue, nullptr).ok();
  });
  SetCounters(state, m, n, k, m * k + n * k + 2.0 * m * n);
}

void BM_QuantizeActivationsInt8(benchmark::State& state) {
  if (!HasGpu(state)) return;
  const int64_t rows = state.range(0), cols = state.range(1);
  // bfloat16 inputs: random sign/exponent bits kept in a modest range (high byte 0x3c..0x3f or
  // 0xbc..0xbf), so every row is finite.
  std::vector<uint16_t> host(rows * cols);
  uint32_t s = 12345;
  for (auto& v : host) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<uint16_t>(((s >> 16) & 0x83ffu) | 0x3c00u);
  }
  void* x;
  int8_t* codes;
  uint16_t* scales;
  cudaMalloc(&x, host.size() * 2);
  cudaMalloc(&codes, host.size());
  cudaMalloc(&scales, rows * 2);
  cudaMemcpy(x, host.data(), host.size() * 2, cudaMemcpyHostToDevice);
  const flatfleet::cuda::DeviceActivationQuantization args{
      .x = x,
      .type = flatfleet::cuda::ActivationType::kBfloat16,
      .rows = rows,
      .cols = cols,
      .codes = codes,
      .scales = scales};
  TimeLaunches(state, [&] { return flatfleet::cuda::QuantizeActivationsInt8(args, nullptr).ok(); });
  state.counters["GB"] = benchmark::Counter(rows * (cols * 3.0 + 2) * 1e-9,
                                            benchmark::Counter::kIsIterationInvariantRate);
  cudaFree(x);
  cudaFree(codes);
  cudaFree(scales);
}

// M = 1, 16 (decode), 128, 4096 (prefill) at N = K = 8192; then Llama-70B's down projection
// (N = 8192, K = 28672) and fused gate+up (N = 57344, K = 8192).
void GemmShapes(benchmark::internal::Benchmark* b) {
  for (int64_t m : {1, 16, 128, 4096}) b->Args({m, 8192, 8192});
  for (int64_t m : {16, 4096}) b->Args({m, 8192, 28672});
  b->Args({16, 57344, 8192});
}

BENCHMARK(BM_W8A8)->UseManualTime()->Apply(GemmShapes);
BENCHMARK(BM_W4A8)->UseManualTime()->Apply(GemmShapes);
BENCHMARK(BM_CublasInt8)->UseManualTime()->Apply(GemmShapes);
BENCHMARK(BM_CublasLtInt8WithEpilogue)->UseManualTime()->Apply(GemmShapes);
BENCHMARK(BM_QuantizeActivationsInt8)->UseManualTime()->Args({16, 8192})->Args({4096, 8192});

}  // namespace
