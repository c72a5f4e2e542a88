#include "kernels/cpu/quant/int4_operand_widening.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::quant {

bool WidensToInt4Operands(const QuantFormat& format) {
  return format.bits == 2 || format.bits == 3;
}

absl::StatusOr<QuantizedMatrix> WidenToInt4Operands(const QuantizedMatrix& weight) {
  if (!WidensToInt4Operands(weight.format)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "INT4 operands: a ", weight.format.bits, "-bit", weight.format.balanced ? " balanced" : "",
        " weight (only 2- and 3-bit weights widen to 4-bit codes)"));
  }
  if (absl::Status valid = weight.Validate(); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("INT4 operands: ", valid.message()));
  }
  QuantizedMatrix widened = weight;
  widened.format.bits = 4;
  if (weight.format.balanced) {
    widened.format.balanced = false;  // symmetric 4-bit codes 2c + 1 in -7..7, zero 0
    for (int8_t& code : widened.codes) code = static_cast<int8_t>(2 * code + 1);
  }
  return widened;
}

}  // namespace flatfleet::quant
