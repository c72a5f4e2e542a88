// The Mixtral-8x7B MoE layer on the GPU kernels (hidden 4096, intermediate 14336, 8 experts,
// top-2) at 1, 16, 64 and 4096 tokens: routing, permutation, gather, grouped GEMM gate/up
// (stacked, n = 28672), grouped GEMM down, unpermute. The SiLU * up step is not included (its
// kernel is written elsewhere; the down projection reads a separate random buffer), so the
// whole-layer numbers leave out one elementwise pass over [2 * tokens, 14336].
//
// Counters: TFLOP/s (6 * rows * hidden * intermediate, rows = 2 * tokens) and the weight bytes
// of the experts that received rows (each streamed once when the kernels do it right) per
// second, also as a fraction of 4.3 TB/s. The router logits are random, so at 1 token two
// experts are active and from 16 tokens on usually all eight.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <vector>

#include "bench/cuda/bf16_bench_util.h"
#include "benchmark/benchmark.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/moe_permute.h"
#include "kernels/cuda/moe_routing.h"
#include "kernels/cuda/moe_unpermute.h"

namespace {

using flatfleet::bench::DeviceBf16;
using flatfleet::cuda::ComputeMoePermutation;
using flatfleet::cuda::GatherPermutedRows;
using flatfleet::cuda::GroupedGemm;
using flatfleet::cuda::GroupedGemmPath;
using flatfleet::cuda::TopKSoftmaxRouting;
using flatfleet::cuda::UnpermuteMoeOutput;

constexpr int64_t kHidden = 4096, kIntermediate = 14336, kExperts = 8, kTopK = 2;

// 2.8 GB of expert weights, made once per process and shared by every benchmark.
struct MixtralExperts {
  DeviceBf16 gate_up{kExperts * 2 * kIntermediate * kHidden, 11, 0.02f};  // [E, 2I, H]
  DeviceBf16 down{kExperts * kHidden * kIntermediate, 12, 0.02f};         // [E, H, I]
};
MixtralExperts& Experts() {
  static MixtralExperts* experts = new MixtralExperts();
  return *experts;
}

template <typename T>
T* DeviceArray(int64_t count) {
  void* pointer = nullptr;
  if (cudaMalloc(&pointer, std::max<int64_t>(count, 1) * sizeof(T)) != cudaSuccess) return nullptr;
  return static_cast<T*>(pointer);
}

// The layer's activations and scratch for `tokens` tokens, and its stages.
class MoeLayer {
 public:
  explicit MoeLayer(int64_t tokens)
      : tokens_(tokens),
        rows_(tokens * kTopK),
        x_(tokens * kHidden, 1),
        activated_(rows_ * kIntermediate, 2, 0.5f),
        logits_(DeviceArray<float>(tokens * kExperts)),
        ids_(DeviceArray<int32_t>(rows_)),
        weights_(DeviceArray<float>(rows_)),
        offsets_(DeviceArray<int32_t>(kExperts + 1)),
        source_(DeviceArray<int32_t>(rows_)),
        inverse_(DeviceArray<int32_t>(rows_)),
        xp_(DeviceArray<__nv_bfloat16>(rows_ * kHidden)),
        gate_up_(DeviceArray<__nv_bfloat16>(rows_ * 2 * kIntermediate)),
        down_(DeviceArray<__nv_bfloat16>(rows_ * kHidden)),
        out_(DeviceArray<__nv_bfloat16>(tokens * kHidden)) {
    std::vector<float> logits(tokens * kExperts);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    for (float& v : logits) v = normal(rng);
    if (logits_ != nullptr) {
      cudaMemcpy(logits_, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice);
    }
  }
  ~MoeLayer() {
    for (void* p : std::initializer_list<void*>{logits_, ids_, weights_, offsets_, source_,
                                                inverse_, xp_, gate_up_, down_, out_}) {
      cudaFree(p);
    }
  }

  bool ok() const {
    return x_.ok() && activated_.ok() && logits_ && ids_ && weights_ && offsets_ && source_ &&
           inverse_ && xp_ && gate_up_ && down_ && out_ && Experts().gate_up.ok() &&
           Experts().down.ok();
  }

  bool Route(cudaStream_t stream) {
    return TopKSoftmaxRouting({.router_logits = logits_,
                               .rows = tokens_,
                               .num_experts = kExperts,
                               .top_k = kTopK,
                               .expert_ids = ids_,
                               .expert_weights = weights_},
                              stream)
               .ok() &&
           ComputeMoePermutation({.expert_ids = ids_,
                                  .rows = tokens_,
                                  .top_k = kTopK,
                                  .num_experts = kExperts,
                                  .expert_offsets = offsets_,
                                  .permuted_source_row = source_,
                                  .inverse_permutation = inverse_},
                                 stream)
               .ok() &&
           GatherPermutedRows({.x = x_.get(),
                               .source_rows = tokens_,
                               .hidden = kHidden,
                               .permuted_source_row = source_,
                               .permuted_rows = rows_,
                               .xp = xp_},
                              stream)
               .ok();
  }
  bool GateUp(cudaStream_t stream, GroupedGemmPath path) {
    return GroupedGemm({.num_experts = kExperts,
                        .total_rows = rows_,
                        .max_rows_per_expert = tokens_,
                        .n = 2 * kIntermediate,
                        .k = kHidden,
                        .expert_offsets = offsets_,
                        .xp = xp_,
                        .weights = Experts().gate_up.get(),
                        .yp = gate_up_,
                        .path = path},
                       stream)
        .ok();
  }
  bool Down(cudaStream_t stream, GroupedGemmPath path) {
    return GroupedGemm({.num_experts = kExperts,
                        .total_rows = rows_,
                        .max_rows_per_expert = tokens_,
                        .n = kHidden,
                        .k = kIntermediate,
                        .expert_offsets = offsets_,
                        .xp = activated_.get(),
                        .weights = Experts().down.get(),
                        .yp = down_,
                        .path = path},
                       stream)
        .ok();
  }
  bool Unpermute(cudaStream_t stream) {
    return UnpermuteMoeOutput({.yp = down_,
                               .rows = tokens_,
                               .top_k = kTopK,
                               .hidden = kHidden,
                               .expert_ids = ids_,
                               .expert_weights = weights_,
                               .inverse_permutation = inverse_,
                               .out = out_},
                              stream)
        .ok();
  }

  // Experts with at least one row (after Route has run).
  int64_t ActiveExperts() const {
    std::vector<int32_t> offsets(kExperts + 1);
    cudaMemcpy(offsets.data(), offsets_, offsets.size() * 4, cudaMemcpyDeviceToHost);
    int64_t active = 0;
    for (int64_t e = 0; e < kExperts; ++e) active += offsets[e + 1] > offsets[e];
    return active;
  }
  int64_t rows() const { return rows_; }

 private:
  int64_t tokens_, rows_;
  DeviceBf16 x_, activated_;
  float* logits_;
  int32_t* ids_;
  float* weights_;
  int32_t *offsets_, *source_, *inverse_;
  __nv_bfloat16 *xp_, *gate_up_, *down_, *out_;
};

constexpr double kExpertWeightBytes = 3.0 * kHidden * kIntermediate * 2;

// The whole layer (less SiLU * up), tensor-core grouped GEMMs.
void BM_MixtralMoeLayer(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  MoeLayer layer(state.range(0));
  if (!layer.ok()) {
    state.SkipWithError("out of device memory");
    return;
  }
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  flatfleet::bench::TimeWithEvents(state, stream, [&] {
    return layer.Route(stream) && layer.GateUp(stream, GroupedGemmPath::kAuto) &&
           layer.Down(stream, GroupedGemmPath::kAuto) && layer.Unpermute(stream);
  });
  cudaStreamSynchronize(stream);
  const int64_t active = layer.ActiveExperts();
  state.counters["active_experts"] = static_cast<double>(active);
  flatfleet::bench::SetGemmCounters(state, 6.0 * layer.rows() * kHidden * kIntermediate,
                                    active * kExpertWeightBytes);
  cudaStreamDestroy(stream);
}

// One grouped GEMM alone. Args: tokens, projection (0: gate/up, 1: down), path (0: tensor
// cores, 1: SIMT reference).
void BM_MixtralGroupedGemm(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  MoeLayer layer(state.range(0));
  const bool down = state.range(1) != 0;
  const GroupedGemmPath path =
      state.range(2) != 0 ? GroupedGemmPath::kSimt : GroupedGemmPath::kTensorCore;
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  if (!layer.ok() || !layer.Route(stream)) {
    state.SkipWithError("setup failed");
    cudaStreamDestroy(stream);
    return;
  }
  flatfleet::bench::TimeWithEvents(
      state, stream, [&] { return down ? layer.Down(stream, path) : layer.GateUp(stream, path); });
  cudaStreamSynchronize(stream);
  const int64_t active = layer.ActiveExperts();
  const double n = down ? kHidden : 2 * kIntermediate, k = down ? kIntermediate : kHidden;
  state.counters["active_experts"] = static_cast<double>(active);
  flatfleet::bench::SetGemmCounters(state, 2.0 * layer.rows() * n * k, active * n * k * 2);
  cudaStreamDestroy(stream);
}

// Routing + permutation + gather, and unpermute: the glue around the GEMMs.
void BM_MixtralMoeGlue(benchmark::State& state) {
  if (!flatfleet::bench::HasGpu(state)) return;
  MoeLayer layer(state.range(0));
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  if (!layer.ok() || !layer.Route(stream) || !layer.Down(stream, GroupedGemmPath::kAuto)) {
    state.SkipWithError("setup failed");
    cudaStreamDestroy(stream);
    return;
  }
  flatfleet::bench::TimeWithEvents(state, stream,
                                   [&] { return layer.Route(stream) && layer.Unpermute(stream); });
  cudaStreamDestroy(stream);
}

BENCHMARK(BM_MixtralMoeLayer)
    ->UseManualTime()
    ->ArgName("tokens")
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->Arg(4096);
BENCHMARK(BM_MixtralGroupedGemm)
    ->UseManualTime()
    ->ArgNames({"tokens", "down", "simt"})
    ->ArgsProduct({{1, 16, 64, 4096}, {0, 1}, {0}})
    ->ArgsProduct({{1, 16}, {0, 1}, {1}});
BENCHMARK(BM_MixtralMoeGlue)->UseManualTime()->ArgName("tokens")->Arg(1)->Arg(64)->Arg(4096);

}  // namespace
