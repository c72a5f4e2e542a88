#include "kernels/cuda/hadamard_transform.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/hadamard_transform_launch.h"

namespace flatfleet::cuda {

absl::Status ApplyHadamardRows(const DeviceHadamardRows& args, cudaStream_t stream) {
  const int64_t p = args.power_of_two, m = args.block_size;
  if (p < 1 || (p & (p - 1)) != 0 || m < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Hadamard rows: power_of_two ", p, " (a power of two) and block_size ", m, " (positive)"));
  }
  const int64_t n = p * m;
  if (n > kHadamardMaxSize) {
    return absl::InvalidArgumentError(absl::StrCat("Hadamard rows: size ", n, " exceeds ",
                                                   kHadamardMaxSize,
                                                   " (the row is kept in shared memory)"));
  }
  if (args.rows < 0 || args.rows > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat("Hadamard rows: bad row count ", args.rows));
  }
  const int64_t x_stride = args.x_stride == 0 ? n : args.x_stride;
  const int64_t y_stride = args.y_stride == 0 ? n : args.y_stride;
  if (x_stride < n || y_stride < n) {
    return absl::InvalidArgumentError(absl::StrCat("Hadamard rows: x_stride ", args.x_stride,
                                                   " and y_stride ", args.y_stride,
                                                   " must be 0 or at least ", n));
  }
  if (args.rows > 0 && (args.x == nullptr || args.y == nullptr || args.signs == nullptr ||
                        (m > 1 && args.block == nullptr))) {
    return absl::InvalidArgumentError(
        "Hadamard rows: x, y, signs (and block when block_size > 1) must be device pointers");
  }
  if (!(args.norm > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("Hadamard rows: norm ", args.norm));
  }
  internal::HadamardRowsParams params;
  params.x = args.x;
  params.x_is_bf16 = args.type == ActivationType::kBfloat16;
  params.rows = args.rows;
  params.x_stride = x_stride;
  params.power_of_two = p;
  params.block_size = m;
  params.signs = args.signs;
  params.block = args.block;
  params.norm = args.norm;
  params.y = args.y;
  params.y_stride = y_stride;
  if (const cudaError_t error = internal::LaunchHadamardRows(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat("Hadamard rows launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
