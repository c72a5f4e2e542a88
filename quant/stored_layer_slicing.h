// Tensor-parallel shares of a stored quantized layer (docs/QUANT_FORMATS.md, "Tensor-parallel
// slicing"). Column-parallel layers keep whole output rows, so any rows can be taken with their
// scales, zero points, integer-scale multipliers, QUIK outlier weights and bias. Row-parallel
// layers split the input columns, which is only exact when
//   * no online input transform mixes the columns (a Hadamard rotation spans all of them), and
//   * every weight scale group lies on one rank (group boundaries at the split points; per-channel
//     scales, group_size 0, are shared by every rank's part of the row and are exact).
// Otherwise the slice is refused with an error naming the layer.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/quantized_linear.h"

namespace flatfleet::quant {

// The output rows [begin, end) of each range, in order (stacked column-parallel parts).
absl::StatusOr<QuantizedLinearParts> SliceOutputRows(
    std::string_view layer, const QuantizedLinearParts& parts,
    const std::vector<std::pair<int64_t, int64_t>>& row_ranges);

// The input columns [begin, end) (row-parallel); refuses slices a transform or a group spans.
absl::StatusOr<QuantizedLinearParts> SliceInputColumns(std::string_view layer,
                                                       const QuantizedLinearParts& parts,
                                                       int64_t begin, int64_t end);

}  // namespace flatfleet::quant
