// A row-major matrix of b-bit integer codes with FP16 scales (and zero points when asymmetric),
// per row or per group of consecutive columns. Weights use one row per output channel, activations
// one row per token.
//
// Code convention (both symmetric and asymmetric): codes are signed, value = scale * (code - zero).
//   symmetric:  code in [-(2^(b-1) - 1), 2^(b-1) - 1] (restricted, so -x quantizes to -code),
//               zero = 0 and no zero points are stored.
//   asymmetric: code in [-2^(b-1), 2^(b-1) - 1], integer zero point in the same range. The
//               unsigned code of the papers is code + 2^(b-1) (likewise for the zero point); the
//               difference code - zero is the same in both views.
//   balanced (ABQ-LLM's bit balance; symmetric only): code in [-2^(b-1), 2^(b-1) - 1] (the full
//               signed range), value = scale * (2 * code + 1): the 2^b levels are the odd
//               multiples +-1, +-3, ..., +-(2^b - 1) of the half-step `scale`, symmetric around
//               0 and without a zero level (INT2: {-3, -1, 1, 3} * scale, i.e. {-1.5, -0.5, 0.5,
//               1.5} * step). Centered() returns the odd integer 2 * code + 1, so the integer
//               GEMMs are unchanged; in unsigned storage u = code + 2^(b-1), 2u - (2^b - 1).
// Dequantized values scale * (code - zero) are exact in float32 (11-bit scale x 9-bit integer).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace flatfleet::quant {

struct QuantFormat {
  int bits = 8;             // 2..8
  bool symmetric = true;    // false: per-group integer zero points
  int64_t group_size = 0;   // columns per scale group; 0 means the whole row (per channel/token)
  float clip_ratio = 1.0f;  // (0, 1]: the range is shrunk by this factor before scaling
  bool balanced = false;    // symmetric only: odd levels 2 * code + 1 (see above)
};

// Smallest / largest code of a format (see the convention above).
int32_t MinCode(const QuantFormat& format);
int32_t MaxCode(const QuantFormat& format);
// Largest |code - zero| any element of the format can have: the operand bound of integer GEMMs.
int64_t MaxAbsCodeMinusZero(const QuantFormat& format);

struct QuantizedMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  QuantFormat format;
  std::vector<int8_t> codes;        // rows * cols
  std::vector<uint16_t> scales;     // FP16 bits, rows * GroupsPerRow()
  std::vector<int8_t> zero_points;  // asymmetric only, same layout as scales

  int64_t GroupSize() const { return format.group_size == 0 ? cols : format.group_size; }
  int64_t GroupsPerRow() const { return cols / GroupSize(); }
  float Scale(int64_t row, int64_t group) const;
  int32_t ZeroPoint(int64_t row, int64_t group) const;
  // code - zero of element (row, col); 2 * code + 1 when balanced.
  int32_t Centered(int64_t row, int64_t col) const;
  // scale * (code - zero), row-major.
  std::vector<float> Dequantize() const;
  // Checks the invariants the kernels rely on: bits 2..8, group size dividing cols, vector sizes,
  // codes and zero points within the format's range, scales positive and finite.
  absl::Status Validate() const;
  // Validate's shape part alone (bits, group size, vector sizes; no pass over the elements): what
  // a kernel needs to stay in bounds on a matrix validated once when it was built.
  absl::Status ValidateShape() const;
};

}  // namespace flatfleet::quant
