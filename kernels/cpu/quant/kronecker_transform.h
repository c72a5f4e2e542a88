// FlatQuant's Kronecker-factored affine transform P = P1 (x) P2 (n = n1 * n2), applied without
// materialising the n x n matrix.
//
// For a row x viewed as the n1 x n2 matrix Xr (element (i, j) at i * n2 + j):
//   x (P1 (x) P2)            = vec(P1^T Xr P2)                activations
//   w (P1 (x) P2)^-T          = vec(P1^-1 Wr P2^-T)            weights (P need not be orthogonal)
// so that (x P)(w P^-T)^T = x w^T and a linear layer is unchanged. Arithmetic is double inside,
// float32 out; first the left factor (all columns), then the right factor.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::quant {

// The factor n1 of n = n1 * n2 closest to sqrt(n) with n1 <= n2 (688 -> 16 x 43, 256 -> 16 x 16):
// how FlatQuant factors a layer of n inputs.
int64_t KroneckerLeftFactor(int64_t n);

class KroneckerTransform {
 public:
  // p1: n1 x n1, p2: n2 x n2, row-major; both must be invertible.
  static absl::StatusOr<KroneckerTransform> Create(std::vector<double> p1, int64_t n1,
                                                   std::vector<double> p2, int64_t n2);

  int64_t size() const { return n1_ * n2_; }

  // rows ([num_rows, size()]) <- rows (P1 (x) P2).
  void ApplyToActivationRows(std::span<float> rows, int64_t num_rows) const;
  // rows ([out_features, size()]) <- rows (P1 (x) P2)^-T.
  void FoldIntoWeightRows(std::span<float> rows, int64_t num_rows) const;

 private:
  // row (as n1 x n2) <- left^T * row * right.
  void ApplyFactors(std::span<float> rows, int64_t num_rows, const std::vector<double>& left,
                    const std::vector<double>& right) const;

  int64_t n1_ = 0;
  int64_t n2_ = 0;
  std::vector<double> p1_, p2_;
  std::vector<double> p1_inverse_transpose_, p2_inverse_transpose_;
};

}  // namespace flatfleet::quant
