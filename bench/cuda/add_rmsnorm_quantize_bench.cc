// The fused residual add + RMSNorm + per-token INT8 quantisation (add_rmsnorm_quantize.h) against
// what it replaces and against copy bandwidth, on Llama-3-8B / Mixtral (4096) and 70B (8192) rows
// at decode (1, 16) and prefill (256, 4096) token counts:
//   BM_AddRmsNormQuantize   the fused kernel (no bf16 y written, as a quantized next layer needs);
//   BM_AddRmsNormThenQuantize  FusedAddRmsNorm to bf16, then QuantizeActivationsInt8 of it;
// both report `bytes_per_second` of the traffic the fused kernel must move (read residual 4 B and
// delta 2 B, write residual 4 B and codes 1 B per element: 11 B), so the two rates compare as
// times, and `of_copy`: that rate over the rate of a device-to-device cudaMemcpyAsync moving the
// same bytes (5.5 B per element read and written), timed in the same benchmark. The target is
// of_copy >= 0.75 on the prefill shapes (decode shapes are launch-bound). Timed with CUDA events,
// warm (the 4096-row shapes exceed the L2 anyway).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "bench/cuda/bf16_bench_util.h"
#include "bench/cuda/cuda_event_timer.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/add_rmsnorm_quantize.h"
#include "kernels/cuda/fused_add_rmsnorm.h"
#include "kernels/cuda/int8_activation_quantizer.h"

namespace {

constexpr double kBytesPerElement = 11.0;

using flatfleet::bench::MeanLaunchSeconds;

// Device operands of one rows x hidden problem.
struct Operands {
  Operands(int64_t rows, int64_t hidden) : rows(rows), hidden(hidden) {
    std::vector<float> host(rows * hidden);
    uint32_t state = 0x9e3779b9u;
    for (float& v : host) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      v = static_cast<float>(static_cast<int32_t>(state >> 8) - (1 << 23)) * 0x1p-22f;
    }
    std::vector<__nv_bfloat16> delta(host.size());
    for (size_t i = 0; i < host.size(); ++i) delta[i] = __float2bfloat16(0.25f * host[i]);
    std::vector<float> gamma(hidden, 1.0f);
    copy_bytes = static_cast<size_t>(kBytesPerElement / 2 * rows * hidden);
    ok = cudaMalloc(&residual, host.size() * 4) == cudaSuccess &&
         cudaMalloc(&this->delta, host.size() * 2) == cudaSuccess &&
         cudaMalloc(&weight, hidden * 4) == cudaSuccess &&
         cudaMalloc(&codes, host.size()) == cudaSuccess &&
         cudaMalloc(&scales, rows * 2) == cudaSuccess &&
         cudaMalloc(&y, host.size() * 2) == cudaSuccess &&
         cudaMalloc(&copy_src, copy_bytes) == cudaSuccess &&
         cudaMalloc(&copy_dst, copy_bytes) == cudaSuccess;
    if (ok) {
      cudaMemcpy(residual, host.data(), host.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(this->delta, delta.data(), host.size() * 2, cudaMemcpyHostToDevice);
      cudaMemcpy(weight, gamma.data(), hidden * 4, cudaMemcpyHostToDevice);
      cudaMemset(copy_src, 1, copy_bytes);
    }
  }
  ~Operands() {
    for (void* p : {static_cast<void*>(residual), static_cast<void*>(delta),
                    static_cast<void*>(weight), static_cast<void*>(codes),
                    static_cast<void*>(scales), static_cast<void*>(y), copy_src, copy_dst}) {
      cudaFree(p);
    }
  }
  Operands(const Operands&) = delete;
  Operands& operator=(const Operands&) = delete;

  // Seconds per device-to-device copy of the same traffic.
  double CopySeconds() const {
    return MeanLaunchSeconds(
        [&] { cudaMemcpyAsync(copy_dst, copy_src, copy_bytes, cudaMemcpyDeviceToDevice, nullptr); },
        20);
  }

  int64_t rows, hidden;
  bool ok = false;
  size_t copy_bytes = 0;
  float* residual = nullptr;
  __nv_bfloat16* delta = nullptr;
  float* weight = nullptr;
  int8_t* codes = nullptr;
  uint16_t* scales = nullptr;
  __nv_bfloat16* y = nullptr;
  void* copy_src = nullptr;
  void* copy_dst = nullptr;
};

// Times `launch` per iteration and sets the counters (see the file comment).
template <typename Launch>
void Run(benchmark::State& state, const Operands& op, Launch launch) {
  if (!launch() || cudaDeviceSynchronize() != cudaSuccess) {
    state.SkipWithError("launch failed");
    return;
  }
  const double copy_seconds = op.CopySeconds();
  double total = 0;
  for (auto _ : state) {
    const double seconds = MeanLaunchSeconds(launch, 10);
    state.SetIterationTime(seconds);
    total += seconds;
  }
  const double bytes = kBytesPerElement * op.rows * op.hidden;
  state.counters["bytes_per_second"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  const double mean = total / static_cast<double>(state.iterations());
  state.counters["of_copy"] = copy_seconds / mean;
  state.counters["copy_GBps"] = 2.0 * op.copy_bytes / copy_seconds * 1e-9;
}

// Args: rows, hidden.
void BM_AddRmsNormQuantize(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const Operands op(state.range(0), state.range(1));
  if (!op.ok) {
    state.SkipWithError("out of device memory");
    return;
  }
  const flatfleet::cuda::DeviceAddRmsNormQuantize args{.residual = op.residual,
                                                       .rows = op.rows,
                                                       .hidden = op.hidden,
                                                       .delta = op.delta,
                                                       .weight = op.weight,
                                                       .codes = op.codes,
                                                       .scales = op.scales};
  Run(state, op, [&] { return flatfleet::cuda::AddRmsNormQuantizeInt8(args, nullptr).ok(); });
}

// Args: rows, hidden.
void BM_AddRmsNormThenQuantize(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  const Operands op(state.range(0), state.range(1));
  if (!op.ok) {
    state.SkipWithError("out of device memory");
    return;
  }
  const flatfleet::cuda::DeviceFusedAddRmsNorm norm{.residual = op.residual,
                                                    .rows = op.rows,
                                                    .hidden = op.hidden,
                                                    .delta = op.delta,
                                                    .weight = op.weight,
                                                    .out = op.y};
  const flatfleet::cuda::DeviceActivationQuantization quantize{
      .x = op.y,
      .type = flatfleet::cuda::ActivationType::kBfloat16,
      .rows = op.rows,
      .cols = op.hidden,
      .codes = op.codes,
      .scales = op.scales};
  Run(state, op, [&] {
    return flatfleet::cuda::FusedAddRmsNorm(norm, nullptr).ok() &&
           flatfleet::cuda::QuantizeActivationsInt8(quantize, nullptr).ok();
  });
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t hidden : {4096, 8192})
    for (int64_t rows : {1, 16, 256, 4096}) b->Args({rows, hidden});
  b->ArgNames({"rows", "hidden"});
}

BENCHMARK(BM_AddRmsNormQuantize)->UseManualTime()->Apply(Shapes);
BENCHMARK(BM_AddRmsNormThenQuantize)->UseManualTime()->Apply(Shapes);

}  // namespace
