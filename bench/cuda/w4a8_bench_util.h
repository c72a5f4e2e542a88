// Shared set-up of the W4A8 GEMM benchmarks (w4a8_decode_gemm_bench.cc, w4a8_midm_gemm_bench.cc,
// w4a8_prefill_gemm_bench.cc): random device operands made fast for gigabytes, the operands of
// one W4A8 problem (group 128, symmetric), and cold timing (the L2 flushed before each call, so
// the weights come from HBM as in a decode step).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/l2_flush_launch.h"

namespace flatfleet::bench {

inline constexpr int64_t kW4A8BenchGroupSize = 128;

// A device buffer of `count` 16-bit words from `make(r)` (r: xorshift output) over a 4M-word
// pattern repeated (fast for gigabytes).
template <typename Make>
void* DevicePattern16(int64_t count, Make make, uint32_t seed = 0x9e3779b9u) {
  void* pointer = nullptr;
  if (cudaMalloc(&pointer, std::max<int64_t>(count, 1) * 2) != cudaSuccess) return nullptr;
  const int64_t pattern_count = std::min<int64_t>(count, int64_t{4} << 20);
  std::vector<uint16_t> pattern(pattern_count);
  uint32_t state = seed;
  for (auto& v : pattern) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    v = make(state);
  }
  for (int64_t at = 0; at < count; at += pattern_count) {
    cudaMemcpy(static_cast<uint16_t*>(pointer) + at, pattern.data(),
               std::min(pattern_count, count - at) * 2, cudaMemcpyHostToDevice);
  }
  return pointer;
}

// Random bytes (weights, activation codes) and FP16 scales in [2^-8, 2^-7).
inline void* RandomBytes(int64_t bytes) {
  return DevicePattern16((bytes + 1) / 2, [](uint32_t r) { return static_cast<uint16_t>(r); });
}
inline void* RandomScales(int64_t count) {
  return DevicePattern16(count,
                         [](uint32_t r) { return static_cast<uint16_t>(0x1c00 | (r & 0x3ff)); });
}

// The bytes a W4A8 GEMM must read for its weights: packed codes and FP16 group scales.
inline double Int4WeightBytes(int64_t n, int64_t k) {
  return n * k / 2.0 + 2.0 * n * (k / kW4A8BenchGroupSize);
}

// The operands of one W4A8 problem (group 128, symmetric), device memory; y is [m, n] bf16.
struct W4A8Problem {
  W4A8Problem(int64_t m, int64_t n, int64_t k)
      : x(RandomBytes(m * k)),
        x_scales(RandomScales(m)),
        w(RandomBytes(n * k / 2)),
        w_scales(RandomScales(n * (k / kW4A8BenchGroupSize))),
        add(RandomScales(2 * n)) {  // any finite float bits: 0x1cxx1cxx
    if (cudaMalloc(&y, m * n * 2) != cudaSuccess) y = nullptr;
  }
  ~W4A8Problem() {
    for (void* p : {x, x_scales, w, w_scales, add, y}) cudaFree(p);
  }
  W4A8Problem(const W4A8Problem&) = delete;
  W4A8Problem& operator=(const W4A8Problem&) = delete;
  bool ok() const { return x && x_scales && w && w_scales && add && y; }

  // The argument struct of any W4A8 GEMM over these operands (the fields they name alike).
  template <typename Args>
  Args Operands(int64_t m, int64_t n, int64_t k) const {
    Args args;
    args.m = m;
    args.n = n;
    args.k = k;
    args.group_size = kW4A8BenchGroupSize;
    args.x_codes = static_cast<const int8_t*>(x);
    args.x_scales = static_cast<const uint16_t*>(x_scales);
    args.w_words = static_cast<const uint32_t*>(w);
    args.w_scales = static_cast<const uint16_t*>(w_scales);
    return args;
  }
  // Operands() with the fused epilogue every W4A8 bench times: `add` added, bf16 y.
  template <typename Args>
  Args FusedBf16Operands(int64_t m, int64_t n, int64_t k) const {
    Args args = Operands<Args>(m, n, k);
    args.epilogue_add = static_cast<const float*>(add);
    args.y = y;
    args.y_type = flatfleet::cuda::GemmElementType::kBf16;
    return args;
  }

  void* x;
  void* x_scales;
  void* w;
  void* w_scales;
  void* add;
  void* y = nullptr;
};

// The previous W4A8 path over a W4A8Problem: GemmW4A8 (int8_gemm.h, mma.sync tiles) into float32
// `gemm_out` [m, n], then AddBias (float32 bias) into the bf16 y -- the fused kernels' bits.
struct W4A8TwoKernelPath {
  W4A8TwoKernelPath(const W4A8Problem& problem, int64_t m, int64_t n, int64_t k, float* gemm_out)
      : gemm(problem.Operands<flatfleet::cuda::DeviceW4A8Gemm>(m, n, k)),
        bias{.rows = m,
             .cols = n,
             .x = gemm_out,
             .bias = problem.add,
             .bias_type = flatfleet::cuda::GemmElementType::kFloat32,
             .y = problem.y,
             .y_type = flatfleet::cuda::GemmElementType::kBf16} {
    gemm.y = gemm_out;
  }
  bool Run() const {
    return flatfleet::cuda::GemmW4A8(gemm, nullptr).ok() &&
           flatfleet::cuda::AddBias(bias, nullptr).ok();
  }

  flatfleet::cuda::DeviceW4A8Gemm gemm;
  flatfleet::cuda::DeviceBiasAdd bias;
};

// Reads twice the L2 before each timed call.
class L2Flush {
 public:
  L2Flush() {
    int device = 0, l2_bytes = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device);
    bytes_ = (2 * static_cast<size_t>(std::max(l2_bytes, 1 << 20)) + 255) / 256 * 256;
    if (cudaMalloc(&buffer_, bytes_ + 256) != cudaSuccess) {
      buffer_ = nullptr;
      return;
    }
    cudaMemset(buffer_, 0, bytes_ + 256);
  }
  ~L2Flush() { cudaFree(buffer_); }
  L2Flush(const L2Flush&) = delete;
  L2Flush& operator=(const L2Flush&) = delete;
  bool ok() const { return buffer_ != nullptr; }
  void Run() const {
    flatfleet::cuda::internal::LaunchL2FlushRead(
        buffer_, bytes_, reinterpret_cast<uint32_t*>(static_cast<char*>(buffer_) + bytes_),
        nullptr);
  }

 private:
  void* buffer_ = nullptr;
  size_t bytes_ = 0;
};

// Times `launch` (true on success) with CUDA events, the L2 flushed before each call (untimed).
// Returns the mean seconds per call (0 when skipped).
template <typename Launch>
double TimeCold(benchmark::State& state, const L2Flush& flush, Launch launch) {
  if (!flush.ok()) {
    state.SkipWithError("no memory for the L2 flush");
    return 0;
  }
  if (!launch() || cudaDeviceSynchronize() != cudaSuccess) {
    state.SkipWithError("launch failed");
    return 0;
  }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  double total = 0;
  int64_t calls = 0;
  for (auto _ : state) {
    flush.Run();
    cudaEventRecord(start, nullptr);
    launch();
    cudaEventRecord(stop, nullptr);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
    total += ms / 1e3;
    ++calls;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return calls > 0 ? total / calls : 0;
}

// Mean microseconds of `iterations` calls of `launch`, each after an (untimed) L2 flush; -1 on
// failure.
template <typename Launch>
inline double ColdMicros(const L2Flush& flush, Launch launch, int iterations = 50) {
  if (!flush.ok() || !launch() || cudaDeviceSynchronize() != cudaSuccess) return -1;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  double total_ms = 0;
  for (int i = 0; i < iterations; ++i) {
    flush.Run();
    cudaEventRecord(start, nullptr);
    launch();
    cudaEventRecord(stop, nullptr);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    total_ms += ms;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return cudaGetLastError() == cudaSuccess ? 1e3 * total_ms / iterations : -1;
}

}  // namespace flatfleet::bench
