// Argument checks shared by the host wrappers of the per-row logit kernels (logit penalties, top
// logprobs): the rows x vocab shape with its row stride, and the required device pointers.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace flatfleet::cuda::internal {

// InvalidArgument (prefixed with `name`) unless 0 <= rows <= INT32_MAX, 1 <= vocab <= INT32_MAX
// and the stride (0: vocab) is at least vocab; else the resolved stride.
inline absl::StatusOr<int64_t> CheckLogitRows(const char* name, int64_t rows, int64_t vocab,
                                              int64_t row_stride) {
  if (rows < 0 || vocab <= 0 || vocab > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": bad shape rows = ", rows, ", vocab = ", vocab));
  }
  if (rows > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": rows = ", rows, " exceed one launch"));
  }
  const int64_t stride = row_stride == 0 ? vocab : row_stride;
  if (stride < vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": logits_row_stride = ", stride, " is shorter than vocab = ", vocab));
  }
  return stride;
}

// InvalidArgument naming the first null pointer of (pointer, field name) pairs.
inline absl::Status CheckNonNull(
    const char* name, std::initializer_list<std::pair<const void*, const char*>> required) {
  for (const auto& [pointer, field] : required) {
    if (pointer == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", field, " is null"));
    }
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda::internal
