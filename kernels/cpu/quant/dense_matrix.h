// Small dense square matrices in double (row-major) for the transforms' building blocks.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet::quant {

// A seeded random orthogonal size x size matrix: QR of a Gaussian matrix (SplitMix64 +
// Box-Muller, row-major fill), by modified Gram-Schmidt on the columns with one
// re-orthogonalisation pass; columns keep the sign that makes R's diagonal positive.
std::vector<double> RandomOrthogonal(int64_t size, uint64_t seed);

// The inverse by Gauss-Jordan elimination with partial pivoting; errors if (numerically)
// singular.
absl::StatusOr<std::vector<double>> InvertMatrix(const std::vector<double>& matrix, int64_t size);

std::vector<double> Transpose(const std::vector<double>& matrix, int64_t size);

}  // namespace flatfleet::quant
