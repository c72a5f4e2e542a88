// Float32 GEMM y = x * W^T on shapes of the tiny fixtures and of a Llama-3-70B tensor-parallel
// shard, for decode (m = 1, 8) and prefill (m = 128).
#include <random>
#include <vector>

#include "bench/normal_values.h"
#include "benchmark/benchmark.h"
#include "kernels/cpu/gemm.h"

namespace flatfleet::kernels::cpu {
namespace {

void BM_Gemm(benchmark::State& state) {
  bench::TimeFloatGemm(state);
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["weight GB/s"] = benchmark::Counter(
      4.0 * n * k, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

BENCHMARK(BM_Gemm)
    ->ArgNames({"m", "n", "k"})
    // llama-tiny: MLP up (688 x 256) and LM head (512 x 256)
    ->Args({1, 688, 256})
    ->Args({8, 688, 256})
    ->Args({128, 688, 256})
    ->Args({1, 512, 256})
    // one 8-way shard of a 70B MLP projection (3584 x 8192)
    ->Args({1, 3584, 8192})
    ->Args({8, 3584, 8192})
    ->Args({128, 3584, 8192})
    ->Args({512, 1024, 1024})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace flatfleet::kernels::cpu

BENCHMARK_MAIN();
