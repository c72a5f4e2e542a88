#include "kernels/cuda/kronecker_quantize.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/kronecker_quantize_launch.h"
#include "kernels/cuda/per_device_attribute.h"

namespace flatfleet::cuda {

double KroneckerQuantizeBound(int64_t n1, int64_t n2, double bound_term, double exact) {
  const double e1 = std::ldexp(1.0, -10) + 2.0 * static_cast<double>(n1 + 1) * std::ldexp(1.0, -24);
  const double e2 = std::ldexp(1.0, -10) + 2.0 * static_cast<double>(n2 + 1) * std::ldexp(1.0, -24);
  return (e1 + e2 + e1 * e2) * bound_term + std::ldexp(std::fabs(exact), -24);
}

absl::Status ApplyKroneckerQuantize(const DeviceKroneckerQuantize& args, cudaStream_t stream) {
  return internal::ApplyKroneckerQuantizeWith(args, internal::KroneckerQuantizeOptions{}, stream);
}

namespace internal {

absl::Status ApplyKroneckerQuantizeWith(const DeviceKroneckerQuantize& args,
                                        const KroneckerQuantizeOptions& options,
                                        cudaStream_t stream) {
  if (!KroneckerQuantizeSupports(args.n1, args.n2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Kronecker quantize: factor orders n1 ", args.n1, " and n2 ", args.n2,
        " (the tensor-core kernel takes n1 a multiple of 16 up to 128, n2 a multiple of 8)"));
  }
  const int64_t n = args.n1 * args.n2;
  if (args.rows < 0 || args.rows > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("Kronecker quantize: bad row count ", args.rows));
  }
  const int64_t x_stride = args.x_stride == 0 ? n : args.x_stride;
  const int64_t codes_stride = args.codes_stride == 0 ? n : args.codes_stride;
  if (x_stride < n || codes_stride < n || codes_stride % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Kronecker quantize: x_stride ", args.x_stride, " and codes_stride ",
                     args.codes_stride, " must be 0 or at least ", n, " (codes_stride even)"));
  }
  if (!(args.clip_ratio > 0.0f) || args.clip_ratio > 1.0f || args.qmax < 1 || args.qmax > 127) {
    return absl::InvalidArgumentError(absl::StrCat("Kronecker quantize: clip ratio ",
                                                   args.clip_ratio, " (0, 1], qmax ", args.qmax,
                                                   " (1..127)"));
  }
  if (args.rows > 0 && (args.x == nullptr || args.divisors == nullptr || args.p1 == nullptr ||
                        args.p2 == nullptr || args.codes == nullptr || args.scales == nullptr)) {
    return absl::InvalidArgumentError(
        "Kronecker quantize: x, divisors, p1, p2, codes and scales must be device pointers");
  }
  const int64_t most_cluster = std::min<int64_t>(kKroneckerQuantizeMaxCluster, args.n1 / 16);
  if (options.cluster < 0 || options.cluster > most_cluster ||
      (options.cluster > 1 && args.rows * options.cluster > 0x7fffffff)) {
    return absl::InvalidArgumentError(absl::StrCat("Kronecker quantize: cluster ", options.cluster,
                                                   " (0, or 1..", most_cluster, " for n1 ", args.n1,
                                                   ", rows x cluster < 2^31)"));
  }
  if (options.rows_per_block != 0 &&
      ((options.rows_per_block != 1 && options.rows_per_block != 2 &&
        options.rows_per_block != 4) ||
       options.cluster != 1 ||
       !KroneckerQuantizeRowsFit(args.n1, args.n2, options.rows_per_block))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Kronecker quantize: rows_per_block ", options.rows_per_block,
        " (0, or 1, 2 or 4 where they fit ", args.n1, " x ", args.n2, ", with cluster 1)"));
  }
  KroneckerQuantizeParams params;
  params.x = args.x;
  params.x_is_bf16 = args.type == ActivationType::kBfloat16;
  params.rows = args.rows;
  params.x_stride = x_stride;
  params.n1 = static_cast<int>(args.n1);
  params.n2 = static_cast<int>(args.n2);
  params.divisors = args.divisors;
  params.p1 = args.p1;
  params.p2 = args.p2;
  params.clip_ratio = args.clip_ratio;
  params.qmax = args.qmax;
  params.codes = args.codes;
  params.codes_stride = codes_stride;
  params.scales = args.scales;
  const int device_sms = CurrentDeviceSmCount();
  const int sms = device_sms > 0 ? device_sms : 132;
  // A cluster per row while the rows alone would leave SMs idle (KroneckerQuantizeClusterSize), of
  // a size whose clusters for all the rows the device runs at once.
  params.cluster = options.cluster;
  if (params.cluster == 0) {
    params.cluster = KroneckerQuantizeClusterSize(args.n1, args.rows, sms);
    while (params.cluster > 1 && args.rows > KroneckerQuantizeActiveClusters(params.cluster)) {
      params.cluster = KroneckerQuantizeClusterSize(args.n1, args.rows, sms, params.cluster - 1);
    }
  }
  // Several rows per block only where the blocks still fill the GPU: at decode one row's block
  // would otherwise compute the others' zeros (m = 1 on 8192 wide: 41 us with 4, 27 with 1).
  params.rows_per_block = 1;
  if (params.cluster == 1) {
    params.rows_per_block = options.rows_per_block;
    if (params.rows_per_block == 0) {
      params.rows_per_block = KroneckerQuantizeRowsPerBlock(args.n1, args.n2);
      while (params.rows_per_block > 1 &&
             (args.rows + params.rows_per_block - 1) / params.rows_per_block < sms) {
        params.rows_per_block /= 2;
      }
    }
  }
  const KroneckerQuantizeLayout layout = KroneckerQuantizeSharedLayout(
      args.n1, args.n2, params.rows_per_block, params.cluster, !options.p2_from_l2);
  params.left_offset = layout.left;
  params.p2_offset = layout.p2;
  params.maxima_offset = layout.maxima;
  params.shared_bytes = static_cast<size_t>(layout.bytes);
  params.p2_source = static_cast<int>(layout.p2_source);
  params.p2_ld = static_cast<int>(KroneckerQuantizeP2Ld(args.n2));
  params.p2_chunk_steps = static_cast<int>(layout.p2_chunk_steps);
  if (layout.bytes > kKroneckerQuantizeMaxSharedBytes) {  // Supports and RowsFit exclude it
    return absl::InternalError(
        absl::StrCat("Kronecker quantize: ", layout.bytes, " bytes of shared memory"));
  }
  const cudaError_t error = LaunchKroneckerQuantize(params, stream);
  if (error != cudaSuccess) {
    return absl::InternalError(
        absl::StrCat("Kronecker quantize launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace flatfleet::cuda
