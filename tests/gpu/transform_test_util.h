// Inputs shared by the online-transform kernel tests (Hadamard, Kronecker, fused Kronecker +
// quantize, the stored FlatQuant layers): random near-identity factors, FlatQuant smoothing
// scales, and activation rows in a strided bf16 view.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/quant/kronecker_transform.h"  // KroneckerLeftFactor

namespace flatfleet::cuda::testing {

// An invertible, well-conditioned factor: the identity plus N(0, 0.3 / sqrt(order)) entries.
template <typename Rng>
std::vector<float> RandomNearIdentityFactor(int64_t order, Rng& rng) {
  std::normal_distribution<float> normal(0.0f, 0.3f / std::sqrt(static_cast<float>(order)));
  std::vector<float> factor(order * order);
  for (int64_t i = 0; i < order; ++i) {
    for (int64_t j = 0; j < order; ++j)
      factor[i * order + j] = (i == j ? 1.0f : 0.0f) + normal(rng);
  }
  return factor;
}

// A trained-looking smoothing s = exp(u), u uniform in [-1, 1).
template <typename Rng>
std::vector<float> RandomFlatQuantScales(int64_t n, Rng& rng) {
  std::uniform_real_distribution<float> log_scale(-1.0f, 1.0f);
  std::vector<float> scales(n);
  for (float& s : scales) s = std::exp(log_scale(rng));
  return scales;
}

// `raw` ([rows, cols]) as bf16 bits in rows of `stride` (the padding holds bf16 1.0, which a
// kernel reading past its row would see) and the exact float values of those bits, [rows, cols].
struct StridedBf16Rows {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};

inline StridedBf16Rows MakeStridedBf16Rows(const std::vector<float>& raw, int64_t rows,
                                           int64_t cols, int64_t stride) {
  StridedBf16Rows out;
  out.bits.assign(rows * stride, FloatToBF16(1.0f));
  out.values.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) {
      out.bits[r * stride + i] = FloatToBF16(raw[r * cols + i]);
      out.values[r * cols + i] = BF16ToFloat(out.bits[r * stride + i]);
    }
  }
  return out;
}

// A FlatQuant transform's random inputs for width n: its factorisation (KroneckerLeftFactor), the
// smoothing scales and both near-identity factors, drawn in that order.
struct FlatQuantFactors {
  int64_t n1 = 0, n2 = 0;
  std::vector<float> scales, p1, p2;
};
template <typename Rng>
FlatQuantFactors RandomFlatQuantFactors(int64_t n, Rng& rng) {
  FlatQuantFactors f;
  f.n1 = quant::KroneckerLeftFactor(n);
  f.n2 = n / f.n1;
  f.scales = RandomFlatQuantScales(n, rng);
  f.p1 = RandomNearIdentityFactor(f.n1, rng);
  f.p2 = RandomNearIdentityFactor(f.n2, rng);
  return f;
}

}  // namespace flatfleet::cuda::testing
