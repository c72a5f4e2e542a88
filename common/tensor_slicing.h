// Column and row slices of 2-D weights, for tensor-parallel loading: a rank reads only the part
// of a matrix it multiplies with (rows of a column-parallel layer, columns of a row-parallel one).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "common/tensor.h"

namespace flatfleet {

// Columns [column_begin, column_end) of a stored 2-D tensor, converted to float32; only those
// bytes of every row are read.
absl::StatusOr<Tensor> ToFloat32Columns(const TensorInfo& info, int64_t column_begin,
                                        int64_t column_end);

// Rows [begin, end) of a tensor in memory (any rank >= 1).
absl::StatusOr<Tensor> SliceRows(const Tensor& tensor, int64_t begin, int64_t end);

// Columns [begin, end) of a 2-D tensor in memory.
absl::StatusOr<Tensor> SliceColumns(const Tensor& tensor, int64_t begin, int64_t end);

}  // namespace flatfleet
