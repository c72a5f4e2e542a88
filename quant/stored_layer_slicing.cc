#include "quant/stored_layer_slicing.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flatfleet::quant {
namespace {

// Rows of a row-major [rows, width] vector.
template <typename T>
std::vector<T> TakeRows(const std::vector<T>& values, int64_t width,
                        const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<T> out;
  for (const auto& [begin, end] : ranges) {
    out.insert(out.end(), values.begin() + begin * width, values.begin() + end * width);
  }
  return out;
}

// Columns [begin, end) of a row-major [rows, width] vector.
template <typename T>
std::vector<T> TakeColumns(const std::vector<T>& values, int64_t rows, int64_t width, int64_t begin,
                           int64_t end) {
  std::vector<T> out;
  out.reserve(rows * (end - begin));
  for (int64_t r = 0; r < rows; ++r) {
    out.insert(out.end(), values.begin() + r * width + begin, values.begin() + r * width + end);
  }
  return out;
}

QuantizedMatrix MatrixRows(const QuantizedMatrix& matrix,
                           const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  QuantizedMatrix out;
  out.cols = matrix.cols;
  out.format = matrix.format;
  for (const auto& [begin, end] : ranges) out.rows += end - begin;
  out.codes = TakeRows(matrix.codes, matrix.cols, ranges);
  out.scales = TakeRows(matrix.scales, matrix.GroupsPerRow(), ranges);
  if (!matrix.zero_points.empty()) {
    out.zero_points = TakeRows(matrix.zero_points, matrix.GroupsPerRow(), ranges);
  }
  return out;
}

// Columns [begin, end) of a weight matrix; groups must not cross the cut.
absl::StatusOr<QuantizedMatrix> MatrixColumns(std::string_view layer, const QuantizedMatrix& matrix,
                                              int64_t begin, int64_t end) {
  const int64_t group = matrix.format.group_size;
  if (group > 0 && (begin % group != 0 || end % group != 0)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "layer %s: tensor parallelism splits its weight columns at [%d, %d), but its scale "
        "groups of %d columns would span ranks; quantize with a group size that divides each "
        "rank's share, or use fewer ranks",
        layer, begin, end, group));
  }
  QuantizedMatrix out;
  out.rows = matrix.rows;
  out.cols = end - begin;
  out.format = matrix.format;
  out.codes = TakeColumns(matrix.codes, matrix.rows, matrix.cols, begin, end);
  if (group == 0) {  // per channel: every rank keeps the row's scale
    out.scales = matrix.scales;
    out.zero_points = matrix.zero_points;
  } else {
    const int64_t groups = matrix.GroupsPerRow();
    out.scales = TakeColumns(matrix.scales, matrix.rows, groups, begin / group, end / group);
    if (!matrix.zero_points.empty()) {
      out.zero_points =
          TakeColumns(matrix.zero_points, matrix.rows, groups, begin / group, end / group);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<QuantizedLinearParts> SliceOutputRows(
    std::string_view layer, const QuantizedLinearParts& parts,
    const std::vector<std::pair<int64_t, int64_t>>& row_ranges) {
  QuantizedLinearParts out = parts;
  int64_t rows = 0;
  switch (parts.gemm_kind) {
    case LinearGemmKind::kFloatScales:
      rows = parts.weight.rows;
      break;
    case LinearGemmKind::kIntegerScales:
      rows = parts.integer_scaled.weight.rows;
      break;
    case LinearGemmKind::kQuik:
      rows = parts.quik.n;
      break;
  }
  for (const auto& [begin, end] : row_ranges) {
    if (begin < 0 || begin > end || end > rows) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "layer %s: rows [%d, %d) are outside its %d output rows", layer, begin, end, rows));
    }
  }
  switch (parts.gemm_kind) {
    case LinearGemmKind::kFloatScales:
      out.weight = MatrixRows(parts.weight, row_ranges);
      break;
    case LinearGemmKind::kIntegerScales: {
      const QuantizedMatrix& weight = parts.integer_scaled.weight;
      out.integer_scaled.weight = MatrixRows(weight, row_ranges);
      out.integer_scaled.multipliers =
          TakeRows(parts.integer_scaled.multipliers, weight.GroupsPerRow(), row_ranges);
      out.integer_scaled.base_scales = TakeRows(parts.integer_scaled.base_scales, 1, row_ranges);
      break;
    }
    case LinearGemmKind::kQuik: {
      const int64_t outliers = static_cast<int64_t>(parts.quik.outlier_channels.size());
      out.quik.base = MatrixRows(parts.quik.base, row_ranges);
      out.quik.n = out.quik.base.rows;
      out.quik.outlier_weights = TakeRows(parts.quik.outlier_weights, outliers, row_ranges);
      break;
    }
  }
  if (!parts.bias.empty()) out.bias = TakeRows(parts.bias, 1, row_ranges);
  if (!parts.output_shift.empty()) out.output_shift = TakeRows(parts.output_shift, 1, row_ranges);
  return out;
}

absl::StatusOr<QuantizedLinearParts> SliceInputColumns(std::string_view layer,
                                                       const QuantizedLinearParts& parts,
                                                       int64_t begin, int64_t end) {
  if (begin < 0 || begin >= end || end > parts.in_features) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layer %s: columns [%d, %d) are outside its %d inputs", layer, begin, end,
                        parts.in_features));
  }
  if (begin == 0 && end == parts.in_features) return parts;
  if (!parts.transforms.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "layer %s: tensor parallelism splits its %d input columns over ranks, but its online "
        "input transform (%s) mixes all of them; run it unsharded or quantize with a recipe "
        "without online transforms",
        layer, parts.in_features, parts.transforms.transforms().front()->kind()));
  }
  QuantizedLinearParts out = parts;
  out.in_features = end - begin;
  switch (parts.gemm_kind) {
    case LinearGemmKind::kFloatScales: {
      FF_ASSIGN_OR_RETURN(out.weight, MatrixColumns(layer, parts.weight, begin, end));
      break;
    }
    case LinearGemmKind::kIntegerScales: {
      const QuantizedMatrix& weight = parts.integer_scaled.weight;
      FF_ASSIGN_OR_RETURN(out.integer_scaled.weight, MatrixColumns(layer, weight, begin, end));
      const int64_t group = weight.format.group_size;  // > 0 for integer scales
      out.integer_scaled.multipliers =
          TakeColumns(parts.integer_scaled.multipliers, weight.rows, weight.GroupsPerRow(),
                      begin / group, end / group);
      break;
    }
    case LinearGemmKind::kQuik: {
      const QuikWeight& quik = parts.quik;
      const int64_t outliers = static_cast<int64_t>(quik.outlier_channels.size());
      // The base matrix holds the non-outlier columns in order: this rank's are contiguous.
      auto rest_before = [&](int64_t column) {
        const int64_t outliers_before =
            std::lower_bound(quik.outlier_channels.begin(), quik.outlier_channels.end(), column) -
            quik.outlier_channels.begin();
        return column - outliers_before;
      };
      FF_ASSIGN_OR_RETURN(out.quik.base,
                          MatrixColumns(layer, quik.base, rest_before(begin), rest_before(end)));
      out.quik.k = end - begin;
      out.quik.outlier_channels.clear();
      std::vector<int64_t> kept;
      for (int64_t i = 0; i < outliers; ++i) {
        const int64_t c = quik.outlier_channels[i];
        if (c >= begin && c < end) {
          out.quik.outlier_channels.push_back(c - begin);
          kept.push_back(i);
        }
      }
      if (out.quik.base.cols == 0) {
        return absl::FailedPreconditionError(
            absl::StrFormat("layer %s: the QUIK slice [%d, %d) would hold only outlier columns",
                            layer, begin, end));
      }
      out.quik.outlier_weights.clear();
      for (int64_t n = 0; n < quik.n; ++n) {
        for (int64_t i : kept)
          out.quik.outlier_weights.push_back(quik.outlier_weights[n * outliers + i]);
      }
      break;
    }
  }
  return out;
}

}  // namespace flatfleet::quant
