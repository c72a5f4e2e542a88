#include "common/tensor_slicing.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/shape_string.h"

namespace flatfleet {
namespace {

absl::Status CheckRange(int64_t begin, int64_t end, int64_t limit, const std::string& what) {
  if (begin < 0 || begin > end || end > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " [", begin, ", ", end, ") out of range [0, ", limit, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Tensor> ToFloat32Columns(const TensorInfo& info, int64_t column_begin,
                                        int64_t column_end) {
  const std::string where = absl::StrCat(info.file, ": tensor '", info.name, "'");
  if (info.shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a column slice needs a 2-D tensor, not ", FormatShape(info.shape)));
  }
  const int64_t rows = info.shape[0];
  const int64_t columns = info.shape[1];
  if (absl::Status range = CheckRange(column_begin, column_end, columns, where + ": columns");
      !range.ok()) {
    return range;
  }
  // Each row's slice is a run of consecutive elements: read it as rows of the tensor viewed
  // flat, so that dtype conversion stays in one place (ToFloat32Rows).
  TensorInfo flat = info;
  flat.shape = {rows * columns};
  const int64_t width = column_end - column_begin;
  Tensor result({rows, width});
  for (int64_t r = 0; r < rows; ++r) {
    absl::StatusOr<Tensor> run =
        ToFloat32Rows(flat, r * columns + column_begin, r * columns + column_end);
    if (!run.ok()) return run.status();
    std::copy(run->vector().begin(), run->vector().end(), result.row(r));
  }
  return result;
}

absl::StatusOr<Tensor> SliceRows(const Tensor& tensor, int64_t begin, int64_t end) {
  if (tensor.rank() < 1) return absl::InvalidArgumentError("SliceRows: a scalar has no rows");
  if (absl::Status range = CheckRange(begin, end, tensor.dim(0), "SliceRows: rows"); !range.ok()) {
    return range;
  }
  const int64_t row_elements = tensor.dim(0) == 0 ? 0 : tensor.size() / tensor.dim(0);
  std::vector<int64_t> shape = tensor.shape();
  shape[0] = end - begin;
  return Tensor(std::move(shape), std::vector<float>(tensor.data() + begin * row_elements,
                                                     tensor.data() + end * row_elements));
}

absl::StatusOr<Tensor> SliceColumns(const Tensor& tensor, int64_t begin, int64_t end) {
  if (tensor.rank() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("SliceColumns: needs a 2-D tensor, not ", tensor.ShapeString()));
  }
  if (absl::Status range = CheckRange(begin, end, tensor.dim(1), "SliceColumns: columns");
      !range.ok()) {
    return range;
  }
  Tensor result({tensor.dim(0), end - begin});
  for (int64_t r = 0; r < tensor.dim(0); ++r) {
    std::copy(tensor.row(r) + begin, tensor.row(r) + end, result.row(r));
  }
  return result;
}

}  // namespace flatfleet
