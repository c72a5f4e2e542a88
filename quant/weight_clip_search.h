// RTN weight quantization with a clipping search (as in AWQ / ABQ-LLM): for every scale group
// (a whole row when per channel) try clip ratios 1, 1 - step, ..., min_ratio and keep the one
// whose dequantized group has the smallest squared error against the float weights. Below 4 bits
// shrinking the range trades a few saturated outliers for a finer step on everything else.
//
// Each group is quantized exactly as QuantizeRtn quantizes a one-group matrix with that clip
// ratio (rtn_quantizer.h), so the result is a regular QuantizedMatrix for the integer GEMMs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/quant/quantized_matrix.h"

namespace flatfleet::quant {

struct ClipSearchOptions {
  float min_ratio = 0.5f;
  float step = 0.025f;
};

struct ClipSearchResult {
  QuantizedMatrix matrix;
  std::vector<float> clip_ratios;  // chosen ratio per [row][group]
};

// `format.clip_ratio` is ignored (it is what is searched).
absl::StatusOr<ClipSearchResult> QuantizeRtnWithClipSearch(std::span<const float> values,
                                                           int64_t rows, int64_t cols,
                                                           const QuantFormat& format,
                                                           const ClipSearchOptions& options = {});

}  // namespace flatfleet::quant
