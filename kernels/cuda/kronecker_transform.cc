#include "kernels/cuda/kronecker_transform.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/kronecker_transform_launch.h"
#include "kernels/cuda/per_device_attribute.h"

namespace flatfleet::cuda {
namespace {

constexpr int64_t kGroup = internal::kKroneckerValuesPerThread;

int64_t RoundUpToGroup(int64_t v) { return (v + kGroup - 1) / kGroup * kGroup; }

// Values of a per block: all of them once the rows alone fill the GPU (two blocks per SM), else
// the row's n1 values split over several blocks (decode: one row would otherwise run on one SM).
int64_t ChooseAPerBlock(int64_t rows, int64_t n1) {
  const int sms = CurrentDeviceSmCount();
  const int64_t target_blocks = 2 * static_cast<int64_t>(sms > 0 ? sms : 132);
  if (rows >= target_blocks) return n1;
  const int64_t parts = std::min((target_blocks + rows - 1) / rows, (n1 + kGroup - 1) / kGroup);
  return std::min(n1, RoundUpToGroup((n1 + parts - 1) / parts));
}

// Rows of T per pass: about 4096 values, a multiple of the values per thread, fewer where shared
// memory runs out (down to one row).
int64_t ChooseChunkRows(int64_t n1, int64_t n2, int64_t a_per_block) {
  int64_t chunk = std::min(a_per_block, std::max(kGroup, RoundUpToGroup((4096 + n2 - 1) / n2)));
  while (chunk > 1 &&
         internal::KroneckerRowsSharedBytes(n1, n2, chunk) > kKroneckerMaxSharedBytes) {
    chunk = chunk > kGroup ? chunk - kGroup : 1;
  }
  return chunk;
}

}  // namespace

int64_t KroneckerRowsMinSharedBytes(int64_t n1, int64_t n2) {
  return internal::KroneckerRowsSharedBytes(n1, n2, 1);
}

absl::Status ApplyKroneckerRows(const DeviceKroneckerRows& args, cudaStream_t stream) {
  if (args.n1 < 1 || args.n2 < 1 || args.n1 > 4096 || args.n2 > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("Kronecker rows: factor orders n1 ", args.n1,
                                                   " and n2 ", args.n2, " (1..4096, 1..65536)"));
  }
  const int64_t n = args.n1 * args.n2;
  if (KroneckerRowsMinSharedBytes(args.n1, args.n2) > kKroneckerMaxSharedBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Kronecker rows: size ", n, " = ", args.n1, " x ", args.n2, " needs ",
        KroneckerRowsMinSharedBytes(args.n1, args.n2), " bytes of shared memory (at most ",
        kKroneckerMaxSharedBytes, ": the row and P1 are kept there)"));
  }
  if (args.rows < 0 || args.rows > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat("Kronecker rows: bad row count ", args.rows));
  }
  const int64_t x_stride = args.x_stride == 0 ? n : args.x_stride;
  const int64_t y_stride = args.y_stride == 0 ? n : args.y_stride;
  if (x_stride < n || y_stride < n) {
    return absl::InvalidArgumentError(absl::StrCat("Kronecker rows: x_stride ", args.x_stride,
                                                   " and y_stride ", args.y_stride,
                                                   " must be 0 or at least ", n));
  }
  if (args.rows > 0 && (args.x == nullptr || args.y == nullptr || args.divisors == nullptr ||
                        args.p1 == nullptr || args.p2 == nullptr)) {
    return absl::InvalidArgumentError(
        "Kronecker rows: x, y, divisors, p1 and p2 must be device pointers");
  }
  internal::KroneckerRowsParams params;
  params.x = args.x;
  params.x_is_bf16 = args.type == ActivationType::kBfloat16;
  params.rows = args.rows;
  params.x_stride = x_stride;
  params.n1 = static_cast<int>(args.n1);
  params.n2 = static_cast<int>(args.n2);
  const int64_t a_per_block = ChooseAPerBlock(args.rows, args.n1);
  params.a_per_block = static_cast<int>(a_per_block);
  params.chunk_rows = static_cast<int>(ChooseChunkRows(args.n1, args.n2, a_per_block));
  params.divisors = args.divisors;
  params.p1 = args.p1;
  params.p2 = args.p2;
  params.y = args.y;
  params.y_stride = y_stride;
  if (const cudaError_t error = internal::LaunchKroneckerRows(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat("Kronecker rows launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
