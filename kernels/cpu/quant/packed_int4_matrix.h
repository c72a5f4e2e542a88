// A 4-bit QuantizedMatrix in the GPU's interleaved INT4 layout (int4_interleaved.h), row by row:
// row r's K codes become K / 8 words, rows concatenated. Symmetric codes are stored signed;
// asymmetric codes are stored in their unsigned view code + 8 (so is the zero point, by the
// caller), which needs no sign extension after unpacking.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/bit_packing.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

struct PackedInt4Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  Signedness signedness = Signedness::kSigned;
  std::vector<uint32_t> words;  // rows * cols / 8
};

// Errors unless the matrix is 4-bit with cols a multiple of 8.
absl::StatusOr<PackedInt4Matrix> PackInt4Matrix(const QuantizedMatrix& matrix);
// The codes back, in QuantizedMatrix's signed convention.
std::vector<int8_t> UnpackInt4MatrixCodes(const PackedInt4Matrix& packed);

}  // namespace flatfleet::quant
