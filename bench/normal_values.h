// Shared pieces of the CPU benchmarks: seeded standard-normal inputs (the same values on every
// run) and the float32 GEMM's timed loop, which gemm_bench reports and the quantized GEMM bench
// runs as its peer.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/gemm.h"

namespace flatfleet::bench {

inline std::vector<float> NormalValues(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

// Times y = x * W^T for the state's (m, n, k) on seeded inputs.
inline void TimeFloatGemm(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  std::mt19937 rng(1);
  const std::vector<float> x = NormalValues(m * k, rng);
  const std::vector<float> w = NormalValues(n * k, rng);
  std::vector<float> y(m * n);
  const kernels::cpu::PackedMatrix packed(w.data(), n, k, nullptr);
  for (auto _ : state) {
    kernels::cpu::Gemm(x.data(), m, packed, y.data());
    benchmark::DoNotOptimize(y.data());
  }
}

}  // namespace flatfleet::bench
