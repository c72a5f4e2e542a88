// GPTQ from few calibration rows against RTN with the clip search, on held-out rows of the same
// distribution: the measurement behind the few-token rule for sparse-MoE experts
// (quant/expert_calibration_fallback.h, docs/QUANTIZATION.md "Experts that few calibration tokens
// reach"). A [128, K] weight (N(0, 0.05)), 4-bit symmetric groups of 128; inputs x = z diag(s) M
// with z ~ N(0, I), a random mixing M and spectrum s_i = i^(-decay/2) (decay 0: isotropic,
// 1: power-law energy like real activations), three channels scaled by 10. Printed: the output
// error sum ||x (W - What)^T||^2 over 2048 held-out rows, divided by RTN with the clip search's,
// for GPTQ on m rows with dampening 0.01, 0.1 and 1.
// Usage: few_row_gptq_bench [K ...]   (default 256 512)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "quant/gptq_quantizer.h"
#include "quant/weight_clip_search.h"

namespace {

using flatfleet::quant::GptqOptions;
using flatfleet::quant::QuantFormat;
using flatfleet::quant::QuantizedMatrix;

std::vector<double> Gram(const std::vector<float>& x, int64_t m, int64_t k) {
  std::vector<double> h(k * k, 0.0);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) h[i * k + j] += double{x[r * k + i]} * x[r * k + j];
    }
  }
  return h;
}

int Run(int64_t k, double decay) {
  const int64_t n = 128, test_rows = 2048;
  std::mt19937_64 rng(1234 + k);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> mix(k * k);
  for (float& v : mix) v = normal(rng) / std::sqrt(static_cast<float>(k));
  std::vector<float> scale(k);
  for (int64_t i = 0; i < k; ++i) {
    scale[i] = std::pow(static_cast<float>(i + 1), static_cast<float>(-0.5 * decay));
  }
  auto sample = [&](int64_t m) {
    std::vector<float> x(m * k, 0.0f), z(k);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t i = 0; i < k; ++i) z[i] = normal(rng) * scale[i];
      for (int64_t j = 0; j < k; ++j) {
        double s = 0.0;
        for (int64_t i = 0; i < k; ++i) s += z[i] * mix[i * k + j];
        x[r * k + j] = static_cast<float>(s);
      }
      for (int64_t c : {int64_t{3}, k / 3, k / 2 + 7}) x[r * k + c] *= 10.0f;  // outliers
    }
    return x;
  };
  std::vector<float> w(n * k);
  for (float& v : w) v = normal(rng) * 0.05f;
  const std::vector<double> held_out = Gram(sample(test_rows), test_rows, k);
  QuantFormat format;
  format.bits = 4;
  format.group_size = 128;
  format.symmetric = true;
  auto error = [&](const QuantizedMatrix& q) {
    return flatfleet::quant::OutputErrorWithHessian(w, q.Dequantize(), n, k, held_out);
  };
  auto clip = flatfleet::quant::QuantizeRtnWithClipSearch(w, n, k, format);
  if (!clip.ok()) return 1;
  const double reference = error(clip->matrix);
  std::printf("K = %lld, decay %.0f (error / RTN with clip search)\n", static_cast<long long>(k),
              decay);
  std::printf("     m  gptq 0.01  gptq 0.1  gptq 1\n");
  for (int64_t m : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}) {
    const std::vector<double> h = Gram(sample(m), m, k);
    std::printf("%6lld", static_cast<long long>(m));
    for (double damp : {0.01, 0.1, 1.0}) {
      GptqOptions options;
      options.damp = damp;
      auto q = flatfleet::quant::QuantizeGptq(w, n, k, h, format, options);
      if (!q.ok()) return 1;
      std::printf("  %9.3f", error(*q) / reference);
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> widths;
  for (int i = 1; i < argc; ++i) widths.push_back(std::atoll(argv[i]));
  if (widths.empty()) widths = {256, 512};
  for (int64_t k : widths) {
    for (double decay : {0.0, 1.0}) {
      if (Run(k, decay) != 0) return 1;
    }
  }
  return 0;
}
