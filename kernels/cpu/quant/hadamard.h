// Randomized Hadamard rotations (QuaRot/FlatQuant-style) for any size n = p * m, p a power of two.
//
//   Q = D * (H_p / sqrt(p)  (x)  B_m)
// D: diagonal of seeded random signs; H_p: Sylvester Hadamard (applied by the fast Walsh-Hadamard
// transform); B_m: an orthonormal m x m block, chosen as
//   * nothing (m = 1) when n is a power of two;
//   * a Paley-I Hadamard matrix / sqrt(m) when m = 4 * odd(n) and m - 1 is a prime = 3 (mod 4)
//     (m = 12, 20, 44, 48 ...: n = 12 * 2^k, 20 * 2^k, ...);
//   * otherwise a seeded random orthogonal matrix of size odd(n) (dense_matrix.h), e.g. 7 for
//     n = 14336 or 43 for n = 11008. Odd factors above 1024 are refused.
// Q is orthogonal, so a row transform x -> x Q of activations is undone by folding the same Q into
// the weight rows: X W^T = (X Q) (W Q)^T.
//
// Row application, exactly (double inside, float32 result): x_i *= D_i; view x as a p x m matrix
// (element (i, j) at i * m + j); apply H_p down each column and scale by 1/sqrt(p); multiply each
// row by B_m on the right.
// Seeds: the n signs are the first n SplitMix64(seed).NextSign() draws (D_i = -1 when the top bit
// is set); the random block, if any, uses the next Next() draw as its seed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::quant {

// In-place unnormalised Walsh-Hadamard transform of data[0], data[stride], ... (length a power of
// two): the product with the Sylvester matrix H (H[i][j] = (-1)^popcount(i & j)).
void FastWalshHadamard(double* data, int64_t length, int64_t stride);

// A +-1 Hadamard matrix of `order` by the Paley-I construction; errors unless order - 1 is a prime
// congruent to 3 mod 4.
absl::StatusOr<std::vector<int8_t>> PaleyHadamard(int64_t order);

class RandomizedHadamard {
 public:
  static absl::StatusOr<RandomizedHadamard> Create(int64_t size, uint64_t seed);

  int64_t size() const { return power_of_two_ * block_size_; }
  int64_t power_of_two() const { return power_of_two_; }
  int64_t block_size() const { return block_size_; }
  bool block_is_paley() const { return block_is_paley_; }
  // D's diagonal ([size()], +-1) and B_m ([block_size()^2] row-major, {1} when m = 1): what a
  // device kernel needs to apply the same rotation.
  const std::vector<double>& signs() const { return signs_; }
  const std::vector<double>& block() const { return block_; }

  // rows ([num_rows, size()], row-major) <- rows * Q.
  void ApplyToActivationRows(std::span<float> rows, int64_t num_rows) const;
  // Weight rows ([out_features, size()]) <- W Q; the same operation, named for the call site.
  void FoldIntoWeightRows(std::span<float> rows, int64_t num_rows) const {
    ApplyToActivationRows(rows, num_rows);
  }
  // Q itself, [size][size] row-major, in double (row i = e_i Q).
  std::vector<double> Materialize() const;

 private:
  void ApplyToRow(double* row) const;

  int64_t power_of_two_ = 1;
  int64_t block_size_ = 1;
  bool block_is_paley_ = false;
  std::vector<double> signs_;
  std::vector<double> block_;  // block_size_^2, orthonormal
};

}  // namespace flatfleet::quant
