// The quantized CPU backend's integer GEMM (quantized_gemm.h, tiled on the thread pool by
// group_dot_products.h; shapes-only operand checks, as QuantizedLinear::Forward runs it) against,
// in the same binary, the scalar single-threaded loop it replaced and the float32 GEMM
// (kernels/cpu/gemm.h) on the same shape: W4A8 with groups of 128, the shapes of one Llama-3-8B
// layer (qkv 6144 x 4096, o 4096 x 4096, gate|up 28672 x 4096, down 4096 x 14336) at decode (m = 1,
// 16) and calibration batch (m = 512) sizes. bench/RESULTS.md has the numbers and the command.
#include <cmath>
#include <random>
#include <vector>

#include "bench/normal_values.h"
#include "benchmark/benchmark.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"

namespace flatfleet::quant {
namespace {

struct Operands {
  QuantizedMatrix x;
  QuantizedMatrix w;
};

Operands MakeOperands(int64_t m, int64_t n, int64_t k) {
  std::mt19937 rng(1);
  const std::vector<float> x = bench::NormalValues(m * k, rng);
  const std::vector<float> w = bench::NormalValues(n * k, rng);
  return {*QuantizeRtn(x, m, k, {.bits = 8}),
          *QuantizeRtn(w, n, k, {.bits = 4, .symmetric = false, .group_size = 128})};
}

// The loop QuantizedGemm was before it was tiled (its output only): operands centred per element
// into int32, then one (m, n, group) at a time on one thread.
void ScalarQuantizedGemmOutput(const QuantizedMatrix& a, const QuantizedMatrix& w, float* y) {
  const int64_t m_size = a.rows, n_size = w.rows, k_size = w.cols;
  const int64_t group_size = w.GroupSize(), groups = w.GroupsPerRow();
  std::vector<int32_t> x(m_size * k_size), wc(n_size * k_size);
  for (int64_t m = 0; m < m_size; ++m)
    for (int64_t k = 0; k < k_size; ++k) x[m * k_size + k] = a.Centered(m, k);
  for (int64_t n = 0; n < n_size; ++n)
    for (int64_t k = 0; k < k_size; ++k) wc[n * k_size + k] = w.Centered(n, k);
  for (int64_t m = 0; m < m_size; ++m) {
    for (int64_t n = 0; n < n_size; ++n) {
      float partial = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t acc = 0;
        for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) {
          acc += x[m * k_size + k] * wc[n * k_size + k];
        }
        partial = std::fma(static_cast<float>(acc), w.Scale(n, g), partial);
      }
      y[m * n_size + n] = partial * a.Scale(m, 0);
    }
  }
}

void SetCounters(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  state.counters["GMAC/s"] = benchmark::Counter(
      1.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_QuantizedGemmOutput(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const Operands operands = MakeOperands(m, n, k);
  std::vector<float> y(m * n);
  for (auto _ : state) {
    if (!QuantizedGemmOutput(operands.x, operands.w, y, OperandChecks::kShapesOnly).ok())
      state.SkipWithError("gemm failed");
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, m, n, k);
}

void BM_ScalarQuantizedGemmOutput(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const Operands operands = MakeOperands(m, n, k);
  std::vector<float> y(m * n);
  for (auto _ : state) {
    ScalarQuantizedGemmOutput(operands.x, operands.w, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, m, n, k);
}

void BM_FloatGemm(benchmark::State& state) {
  bench::TimeFloatGemm(state);
  SetCounters(state, state.range(0), state.range(1), state.range(2));
}

void Shapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"m", "n", "k"});
  for (int64_t m : {1, 16, 512}) {
    bench->Args({m, 6144, 4096})->Args({m, 4096, 4096})->Args({m, 28672, 4096});
    bench->Args({m, 4096, 14336});
  }
  bench->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_QuantizedGemmOutput)->Apply(Shapes);
BENCHMARK(BM_ScalarQuantizedGemmOutput)->Apply(Shapes);
BENCHMARK(BM_FloatGemm)->Apply(Shapes);

}  // namespace
}  // namespace flatfleet::quant

BENCHMARK_MAIN();
