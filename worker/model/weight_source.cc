#include "worker/model/weight_source.h"

#include <cmath>
#include <cstring>
#include <numbers>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/shape_string.h"
#include "common/status_macros.h"
#include "common/tensor_slicing.h"

namespace flatfleet::engine {
namespace {

absl::Status CheckSlice(std::string_view name, const std::vector<int64_t>& shape,
                        const TensorSlice& slice) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  if (slice.dim < 0 || slice.dim > 1 || slice.dim >= rank || (slice.dim == 1 && rank != 2) ||
      slice.begin < 0 || slice.begin > slice.end || slice.end > shape[slice.dim]) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", std::string(name), "': cannot take [", slice.begin, ", ",
                     slice.end, ") of dimension ", slice.dim, " of shape ", FormatShape(shape)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> CutSlice(const Tensor& whole, const TensorSlice& slice) {
  return slice.dim == 0 ? SliceRows(whole, slice.begin, slice.end)
                        : SliceColumns(whole, slice.begin, slice.end);
}

}  // namespace

absl::StatusOr<Tensor> WeightSource::LoadSlice(std::string_view name,
                                               const std::vector<int64_t>& shape,
                                               const TensorSlice& slice) const {
  FF_RETURN_IF_ERROR(CheckSlice(name, shape, slice));
  FF_ASSIGN_OR_RETURN(Tensor whole, Load(name, shape));
  return CutSlice(whole, slice);
}

absl::StatusOr<RawTensor> WeightSource::LoadRawRows(std::string_view name,
                                                    const std::vector<int64_t>& shape,
                                                    int64_t row_begin, int64_t row_end) const {
  const bool vector = shape.size() == 1;
  Tensor values;
  if (vector || (row_begin == 0 && row_end == shape[0])) {
    FF_ASSIGN_OR_RETURN(values, Load(name, shape));
  } else {
    FF_ASSIGN_OR_RETURN(values, LoadSlice(name, shape, {0, row_begin, row_end}));
  }
  RawTensor raw;
  raw.owned.resize(values.size() * sizeof(float));
  std::memcpy(raw.owned.data(), values.data(), raw.owned.size());
  const int64_t cols = vector ? shape[0] : Tensor::NumElements(shape) / shape[0];
  raw.view =
      runtime::ConstTensorView(raw.owned.data(), runtime::ScalarType::kFloat32,
                               runtime::MemoryKind::kHost, vector ? 1 : row_end - row_begin, cols);
  return raw;
}

absl::StatusOr<RawTensor> CheckpointWeightSource::LoadRawRows(std::string_view name,
                                                              const std::vector<int64_t>& shape,
                                                              int64_t row_begin,
                                                              int64_t row_end) const {
  FF_ASSIGN_OR_RETURN(const TensorInfo* info, store_->Get(name));
  if (info->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(info->file, ": tensor '", std::string(name),
                                                   "' has shape ", FormatShape(info->shape),
                                                   ", expected ", FormatShape(shape)));
  }
  runtime::ScalarType type;
  switch (info->dtype) {
    case DType::kF32:
      type = runtime::ScalarType::kFloat32;
      break;
    case DType::kBF16:
      type = runtime::ScalarType::kBFloat16;
      break;
    case DType::kF16:
      type = runtime::ScalarType::kFloat16;
      break;
    default:
      return WeightSource::LoadRawRows(name, shape, row_begin, row_end);  // converts, or errs
  }
  const bool vector = shape.size() == 1;
  if (!vector && (row_begin < 0 || row_end > shape[0] || row_begin > row_end)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", std::string(name), "': rows [",
                                                   row_begin, ", ", row_end, ") out of range"));
  }
  const int64_t cols = vector ? shape[0] : info->num_elements() / shape[0];
  const size_t element = DTypeSize(info->dtype);
  RawTensor raw;
  raw.view =
      runtime::ConstTensorView(info->data.data() + (vector ? 0 : row_begin * cols * element), type,
                               runtime::MemoryKind::kHost, vector ? 1 : row_end - row_begin, cols);
  return raw;
}

absl::StatusOr<Tensor> CheckpointWeightSource::LoadSlice(std::string_view name,
                                                         const std::vector<int64_t>& shape,
                                                         const TensorSlice& slice) const {
  FF_RETURN_IF_ERROR(CheckSlice(name, shape, slice));
  FF_ASSIGN_OR_RETURN(const TensorInfo* info, store_->Get(name));
  if (info->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(info->file, ": tensor '", std::string(name),
                                                   "' has shape ", FormatShape(info->shape),
                                                   ", expected ", FormatShape(shape)));
  }
  return slice.dim == 0 ? ToFloat32Rows(*info, slice.begin, slice.end)
                        : ToFloat32Columns(*info, slice.begin, slice.end);
}

absl::StatusOr<Tensor> RandomWeightSource::Load(std::string_view name,
                                                const std::vector<int64_t>& shape) const {
  // FNV-1a of the name mixed with the seed: independent of the order tensors are loaded in.
  uint64_t hash = 1469598103934665603ull ^ seed_;
  for (char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  std::mt19937_64 rng(hash);
  Tensor tensor(shape);
  const bool is_norm = name.find("norm") != std::string_view::npos;
  const bool is_embedding = name.find("embed_tokens") != std::string_view::npos;
  constexpr double kTwoPow53 = 9007199254740992.0;
  auto uniform = [&] { return static_cast<double>(rng() >> 11) / kTwoPow53; };
  for (float& value : tensor.span()) {
    if (is_norm) {
      value = static_cast<float>(0.5 + uniform());
    } else {
      // Box-Muller from two uniforms: reproducible across standard libraries.
      const double u1 = 1.0 - uniform();
      const double u2 = uniform();
      const double normal = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
      value = static_cast<float>(normal * (is_embedding ? 1.0 : matrix_stddev_));
    }
  }
  return tensor;
}

}  // namespace flatfleet::engine
