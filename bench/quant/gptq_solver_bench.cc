// GPTQ's time for one linear layer on each solver (quant/gptq_solver.h): the Gram update of
// `--samples` calibration rows, then QuantizeGptq (w4, groups of 128). Random inputs with a
// shared component (a well-conditioned but not diagonal H). bench/RESULTS.md has the numbers.
// Usage: gptq_solver_bench ROWS COLS [SAMPLES [scalar|openblas|both]]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "quant/blas_library.h"
#include "quant/gptq_quantizer.h"
#include "quant/gptq_solver.h"
#include "quant/gram_accumulation.h"

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace flatfleet::quant;
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ROWS COLS [SAMPLES [scalar|openblas|both]]\n", argv[0]);
    return 2;
  }
  const int64_t rows = std::atoll(argv[1]), cols = std::atoll(argv[2]);
  const int64_t samples = argc > 3 ? std::atoll(argv[3]) : 256;
  const std::string which = argc > 4 ? argv[4] : "both";
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(samples * cols);
  for (int64_t s = 0; s < samples; ++s) {
    const float shared = normal(rng);
    for (int64_t i = 0; i < cols; ++i) x[s * cols + i] = normal(rng) + 0.5f * shared;
  }
  std::vector<float> w(rows * cols);
  for (float& v : w) v = 0.02f * normal(rng);
  for (const std::string solver_name : {"scalar", "openblas"}) {
    if (which != "both" && which != solver_name) continue;
    const bool blas = solver_name == "openblas";
    if (blas && BlasGptqSolver() == nullptr) {
      std::printf("openblas: not loadable\n");
      continue;
    }
    auto start = std::chrono::steady_clock::now();
    std::vector<double> h(cols * cols, 0.0);
    AccumulateGram(x, samples, cols, h, blas);
    const double gram_seconds = Seconds(start);
    GptqOptions options;
    options.solver = blas ? BlasGptqSolver() : &ScalarGptqSolver();
    start = std::chrono::steady_clock::now();
    auto result =
        QuantizeGptq(w, rows, cols, h, QuantFormat{.bits = 4, .group_size = 128}, options);
    const double gptq_seconds = Seconds(start);
    if (!result.ok()) {
      std::fprintf(stderr, "%s: %s\n", solver_name.c_str(), result.status().ToString().c_str());
      return 1;
    }
    std::printf("%s: %lld x %lld, %lld samples: Gram %.2f s, QuantizeGptq %.2f s\n",
                solver_name.c_str(), static_cast<long long>(rows), static_cast<long long>(cols),
                static_cast<long long>(samples), gram_seconds, gptq_seconds);
  }
  return 0;
}
