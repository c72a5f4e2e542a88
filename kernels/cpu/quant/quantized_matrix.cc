#include "kernels/cpu/quant/quantized_matrix.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace flatfleet::quant {

int32_t MinCode(const QuantFormat& format) {
  const int32_t half = 1 << (format.bits - 1);
  return format.symmetric && !format.balanced ? -(half - 1) : -half;
}

int32_t MaxCode(const QuantFormat& format) { return (1 << (format.bits - 1)) - 1; }

int64_t MaxAbsCodeMinusZero(const QuantFormat& format) {
  // Symmetric: the zero is 0 and codes are restricted to +-qmax. Asymmetric: code and zero both
  // range over the full b-bit interval, so their difference spans 2^b - 1.
  if (format.balanced) return (int64_t{1} << format.bits) - 1;  // |2 * code + 1|
  if (format.symmetric) return MaxCode(format);
  return (int64_t{1} << format.bits) - 1;
}

float QuantizedMatrix::Scale(int64_t row, int64_t group) const {
  return HalfToFloat(scales[row * GroupsPerRow() + group]);
}

int32_t QuantizedMatrix::ZeroPoint(int64_t row, int64_t group) const {
  return format.symmetric ? 0 : zero_points[row * GroupsPerRow() + group];
}

int32_t QuantizedMatrix::Centered(int64_t row, int64_t col) const {
  if (format.balanced) return 2 * int32_t{codes[row * cols + col]} + 1;
  return int32_t{codes[row * cols + col]} - ZeroPoint(row, col / GroupSize());
}

std::vector<float> QuantizedMatrix::Dequantize() const {
  std::vector<float> values(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      values[r * cols + c] = Scale(r, c / GroupSize()) * static_cast<float>(Centered(r, c));
    }
  }
  return values;
}

absl::Status QuantizedMatrix::ValidateShape() const {
  if (format.bits < 2 || format.bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("bits must be in 2..8, got ", format.bits));
  }
  if (format.balanced && !format.symmetric) {
    return absl::InvalidArgumentError("balanced codes are symmetric (no zero points)");
  }
  if (rows < 0 || cols <= 0 || format.group_size < 0 ||
      (format.group_size > 0 && cols % format.group_size != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad shape [", rows, ", ", cols, "] for group size ", format.group_size));
  }
  const size_t scale_count = static_cast<size_t>(rows * GroupsPerRow());
  if (codes.size() != static_cast<size_t>(rows * cols) || scales.size() != scale_count ||
      zero_points.size() != (format.symmetric ? 0 : scale_count)) {
    return absl::InvalidArgumentError(absl::StrCat("inconsistent sizes: ", codes.size(), " codes, ",
                                                   scales.size(), " scales, ", zero_points.size(),
                                                   " zero points for [", rows, ", ", cols, "]"));
  }
  return absl::OkStatus();
}

absl::Status QuantizedMatrix::Validate() const {
  if (absl::Status shape = ValidateShape(); !shape.ok()) return shape;
  const int32_t min_code = MinCode(format), max_code = MaxCode(format);  // hoisted: a hot scan
  // A branch-free min/max first (it vectorises: a layer has ~10^9 codes); the error names the
  // first bad code, found only when there is one.
  int8_t lowest = 0, highest = 0;
  if (!codes.empty()) {
    lowest = highest = codes[0];
    for (int8_t code : codes) {
      lowest = std::min(lowest, code);
      highest = std::max(highest, code);
    }
  }
  if (lowest < min_code || highest > max_code) {
    for (int8_t code : codes) {
      if (code < min_code || code > max_code) {
        return absl::OutOfRangeError(absl::StrCat("code ", code, " outside the format's range"));
      }
    }
  }
  for (int8_t zero : zero_points) {
    if (zero < min_code || zero > max_code) {
      return absl::OutOfRangeError(
          absl::StrCat("zero point ", zero, " outside the format's range"));
    }
  }
  for (uint16_t scale : scales) {
    const float value = HalfToFloat(scale);
    if (!(value > 0.0f) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("scale ", value, " is not positive and finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::quant
