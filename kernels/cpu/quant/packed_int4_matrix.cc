#include "kernels/cpu/quant/packed_int4_matrix.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/quant/int4_interleaved.h"

namespace flatfleet::quant {
namespace {

constexpr int32_t kUnsignedOffset = 8;  // 2^(4-1): signed code -> unsigned view

}  // namespace

absl::StatusOr<PackedInt4Matrix> PackInt4Matrix(const QuantizedMatrix& matrix) {
  if (auto status = matrix.Validate(); !status.ok()) return status;
  if (matrix.format.bits != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected 4-bit codes, got ", matrix.format.bits));
  }
  if (matrix.cols % kInt4PerWord != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("columns must be a multiple of 8, got ", matrix.cols));
  }
  PackedInt4Matrix packed;
  packed.rows = matrix.rows;
  packed.cols = matrix.cols;
  packed.signedness = matrix.format.symmetric ? Signedness::kSigned : Signedness::kUnsigned;
  const int32_t offset = matrix.format.symmetric ? 0 : kUnsignedOffset;
  std::vector<int32_t> values(matrix.codes.size());
  for (size_t i = 0; i < values.size(); ++i) values[i] = matrix.codes[i] + offset;
  auto words = PackInt4Interleaved(values, packed.signedness);
  if (!words.ok()) return words.status();
  packed.words = *std::move(words);
  return packed;
}

std::vector<int8_t> UnpackInt4MatrixCodes(const PackedInt4Matrix& packed) {
  const int32_t offset = packed.signedness == Signedness::kSigned ? 0 : kUnsignedOffset;
  const std::vector<int32_t> values = UnpackInt4Interleaved(packed.words, packed.signedness);
  std::vector<int8_t> codes(values.size());
  for (size_t i = 0; i < values.size(); ++i) codes[i] = static_cast<int8_t>(values[i] - offset);
  return codes;
}

}  // namespace flatfleet::quant
