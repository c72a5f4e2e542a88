#include "kernels/cuda/activation_ops.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/activation_ops_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr int64_t kMaxCols = std::numeric_limits<int32_t>::max();

// Resolves a 0 stride to `min_stride` and rejects strides shorter than a row.
absl::Status ResolveStride(const char* op, const char* name, int64_t stride, int64_t min_stride,
                           int64_t& resolved) {
  if (stride == 0) stride = min_stride;
  if (stride < min_stride) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " = ", stride, " is shorter than a row (", min_stride, ")"));
  }
  resolved = stride;
  return absl::OkStatus();
}

struct Operands {
  const void* in;
  const char* in_pointer_name;
  const char* in_name;
  int64_t in_stride;
  int64_t in_width;  // elements of `in` a row uses
  void* out;
  const char* out_pointer_name;
  const char* out_name;
  int64_t out_stride;
};

absl::Status Run(const char* op, internal::ElementwiseOp kind, int64_t rows, int64_t cols,
                 const Operands& o, cudaStream_t stream) {
  if (rows < 0 || cols <= 0 || cols > kMaxCols) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": bad shape rows = ", rows, ", cols = ", cols));
  }
  internal::ElementwiseParams params;
  params.op = kind;
  params.rows = rows;
  params.cols = cols;
  if (auto s = ResolveStride(op, o.in_name, o.in_stride, o.in_width, params.in_row_stride);
      !s.ok()) {
    return s;
  }
  if (auto s = ResolveStride(op, o.out_name, o.out_stride, cols, params.out_row_stride); !s.ok()) {
    return s;
  }
  if (rows == 0) return absl::OkStatus();
  if (o.in == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", o.in_pointer_name, " is null"));
  }
  if (o.out == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", o.out_pointer_name, " is null"));
  }
  params.in = o.in;
  params.out = o.out;
  if (const cudaError_t error = internal::LaunchElementwise(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(op, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SiluMul(const DeviceSiluMul& a, cudaStream_t stream) {
  return Run("SiluMul", internal::ElementwiseOp::kSiluMul, a.rows, a.inter,
             {a.gate_up, "gate_up", "gate_up_row_stride", a.gate_up_row_stride, 2 * a.inter, a.out,
              "out", "out_row_stride", a.out_row_stride},
             stream);
}

absl::Status CastBf16ToF32(const DeviceCastBf16ToF32& a, cudaStream_t stream) {
  return Run("CastBf16ToF32", internal::ElementwiseOp::kCastBf16ToF32, a.rows, a.cols,
             {a.in, "in", "in_row_stride", a.in_row_stride, a.cols, a.out, "out", "out_row_stride",
              a.out_row_stride},
             stream);
}

absl::Status CastF32ToBf16(const DeviceCastF32ToBf16& a, cudaStream_t stream) {
  return Run("CastF32ToBf16", internal::ElementwiseOp::kCastF32ToBf16, a.rows, a.cols,
             {a.in, "in", "in_row_stride", a.in_row_stride, a.cols, a.out, "out", "out_row_stride",
              a.out_row_stride},
             stream);
}

absl::Status AddBf16ToF32(const DeviceAddBf16ToF32& a, cudaStream_t stream) {
  return Run("AddBf16ToF32", internal::ElementwiseOp::kAddBf16ToF32, a.rows, a.cols,
             {a.delta, "delta", "delta_row_stride", a.delta_row_stride, a.cols, a.residual,
              "residual", "residual_row_stride", a.residual_row_stride},
             stream);
}

}  // namespace flatfleet::cuda
