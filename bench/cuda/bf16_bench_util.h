// Helpers of the bf16 GEMM and MoE benchmarks: random bf16 device buffers, GPU detection, and
// timing with CUDA events.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"

namespace flatfleet::bench {

// The HBM bandwidth the memory-bound (decode) numbers are compared with.
inline constexpr double kReferenceBandwidth = 4.3e12;  // bytes/s

inline bool HasGpu(benchmark::State& state) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no GPU");
    return false;
  }
  return true;
}

// A device buffer of `count` bf16 values uniform in [-scale, scale): a 16 MiB random pattern
// (xorshift on the host) copied over the whole buffer, which is fast for gigabytes of weights.
class DeviceBf16 {
 public:
  DeviceBf16(size_t count, uint32_t seed, float scale = 1.0f) : count_(count) {
    if (cudaMalloc(&pointer_, std::max<size_t>(count, 1) * 2) != cudaSuccess) {
      pointer_ = nullptr;
      return;
    }
    const size_t pattern_count = std::min<size_t>(count, size_t{8} << 20);
    std::vector<__nv_bfloat16> pattern(pattern_count);
    uint32_t state = seed | 1u;
    for (auto& v : pattern) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      v = __float2bfloat16(scale * (static_cast<float>(state >> 8) / (1 << 23) - 1.0f));
    }
    for (size_t at = 0; at < count; at += pattern_count) {
      const size_t n = std::min(pattern_count, count - at);
      cudaMemcpy(get() + at, pattern.data(), n * 2, cudaMemcpyHostToDevice);
    }
  }
  ~DeviceBf16() { cudaFree(pointer_); }
  DeviceBf16(const DeviceBf16&) = delete;
  DeviceBf16& operator=(const DeviceBf16&) = delete;

  __nv_bfloat16* get() const { return static_cast<__nv_bfloat16*>(pointer_); }
  bool ok() const { return pointer_ != nullptr; }

 private:
  void* pointer_ = nullptr;
  size_t count_;
};

// Times `launch` (returns true on success) with CUDA events per iteration on `stream`, after
// one warm-up call that is also the error check.
template <typename Launch>
void TimeWithEvents(benchmark::State& state, cudaStream_t stream, Launch launch) {
  if (!launch()) {
    state.SkipWithError("launch failed");
    return;
  }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (auto _ : state) {
    cudaEventRecord(start, stream);
    launch();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// Counters: TFLOP/s, weight bytes/s and its fraction of kReferenceBandwidth.
inline void SetGemmCounters(benchmark::State& state, double flops, double weight_bytes) {
  state.counters["TFLOPS"] =
      benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_TBps"] =
      benchmark::Counter(weight_bytes * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_4.3TBps"] = benchmark::Counter(weight_bytes / kReferenceBandwidth,
                                                    benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace flatfleet::bench
