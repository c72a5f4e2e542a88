#include "quant/weight_clip_search.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/quant/rtn_quantizer.h"

namespace flatfleet::quant {
namespace {

double SquaredError(std::span<const float> values, const std::vector<float>& dequantized) {
  double sum = 0.0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double d = static_cast<double>(values[i]) - dequantized[i];
    sum += d * d;
  }
  return sum;
}

}  // namespace

absl::StatusOr<ClipSearchResult> QuantizeRtnWithClipSearch(std::span<const float> values,
                                                           int64_t rows, int64_t cols,
                                                           const QuantFormat& format,
                                                           const ClipSearchOptions& options) {
  if (static_cast<int64_t>(values.size()) != rows * cols) {
    return absl::InvalidArgumentError(absl::StrCat("clip search: ", values.size(), " values for a ",
                                                   rows, " x ", cols, " matrix"));
  }
  if (!(options.min_ratio > 0 && options.min_ratio <= 1 && options.step > 0)) {
    return absl::InvalidArgumentError("clip search: need 0 < min_ratio <= 1 and step > 0");
  }
  const int64_t group_size = format.group_size == 0 ? cols : format.group_size;
  if (group_size <= 0 || cols % group_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip search: group size ", group_size, " does not divide ", cols));
  }
  const int64_t groups = cols / group_size;
  ClipSearchResult result;
  QuantizedMatrix& out = result.matrix;
  out.rows = rows;
  out.cols = cols;
  out.format = format;
  out.format.clip_ratio = 1.0f;  // the ratios differ per group; see clip_ratios
  out.codes.resize(rows * cols);
  out.scales.resize(rows * groups);
  if (!format.symmetric) out.zero_points.resize(rows * groups);
  result.clip_ratios.resize(rows * groups);

  QuantFormat group_format = format;
  group_format.group_size = 0;
  std::vector<float> group_values(group_size);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* start = values.data() + r * cols + g * group_size;
      std::copy(start, start + group_size, group_values.begin());
      double best_error = std::numeric_limits<double>::infinity();
      QuantizedMatrix best;
      float best_ratio = 1.0f;
      // Integer steps so that the candidate set does not depend on float accumulation.
      for (int step = 0;; ++step) {
        const float ratio = 1.0f - step * options.step;
        if (ratio < options.min_ratio - 1e-6f) break;
        group_format.clip_ratio = ratio;
        FF_ASSIGN_OR_RETURN(QuantizedMatrix candidate,
                            QuantizeRtn(group_values, 1, group_size, group_format));
        const double error = SquaredError(group_values, candidate.Dequantize());
        if (error < best_error) {  // strict: ties keep the larger ratio
          best_error = error;
          best = std::move(candidate);
          best_ratio = ratio;
        }
      }
      std::copy(best.codes.begin(), best.codes.end(),
                out.codes.begin() + r * cols + g * group_size);
      out.scales[r * groups + g] = best.scales[0];
      if (!format.symmetric) out.zero_points[r * groups + g] = best.zero_points[0];
      result.clip_ratios[r * groups + g] = best_ratio;
    }
  }
  FF_RETURN_IF_ERROR(out.Validate());
  return result;
}

}  // namespace flatfleet::quant
