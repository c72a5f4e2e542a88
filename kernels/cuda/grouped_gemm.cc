#include "kernels/cuda/grouped_gemm.h"

#include <algorithm>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/grouped_gemm_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "grouped GEMM";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kSimtColumnsPerBlock = 8;  // grouped_gemm.cu: kSimtWarps

absl::Status Invalid(auto&&... pieces) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", pieces...));
}

// Empty when the tensor-core path can run these arguments, else why not.
std::string TensorCoreObstacle(const GroupedGemmArgs& args, int64_t weight_stride) {
  if (args.k % 8 != 0) return absl::StrCat("k = ", args.k, " is not a multiple of 8");
  if (!Aligned16(args.xp)) return "xp is not 16-byte aligned";
  if (!Aligned16(args.yp)) return "yp is not 16-byte aligned";
  if (args.weight_pointers == nullptr) {
    if (!Aligned16(args.weights)) return "weights is not 16-byte aligned";
    if (weight_stride % 8 != 0) {
      return absl::StrCat("weight_expert_stride = ", weight_stride, " is not a multiple of 8");
    }
  }
  return "";
}

}  // namespace

absl::Status GroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  if (args.num_experts < 1 || args.num_experts > kMaxGroupedGemmExperts) {
    return Invalid("num_experts = ", args.num_experts, " is outside [1, ", kMaxGroupedGemmExperts,
                   "]");
  }
  if (args.total_rows < 0 || args.total_rows > kMaxInt32) {
    return Invalid("total_rows = ", args.total_rows, " is negative or exceeds int32");
  }
  if (args.n < 1 || args.n > kMaxInt32 || args.k < 1 || args.k > kMaxInt32) {
    return Invalid("bad shape n = ", args.n, ", k = ", args.k);
  }
  if (args.max_rows_per_expert < 0) {
    return Invalid("max_rows_per_expert = ", args.max_rows_per_expert, " is negative");
  }
  const int64_t weight_stride =
      args.weight_expert_stride == 0 ? args.n * args.k : args.weight_expert_stride;
  if (args.weight_pointers == nullptr && weight_stride < args.n * args.k) {
    return Invalid("weight_expert_stride = ", weight_stride,
                   " is less than n * k = ", args.n * args.k);
  }
  if (args.total_rows == 0) return absl::OkStatus();
  if (args.expert_offsets == nullptr) return Invalid("expert_offsets is null");
  if (args.xp == nullptr) return Invalid("xp is null");
  if (args.yp == nullptr) return Invalid("yp is null");
  if (args.y_row_stride != 0 && args.y_row_stride < args.n) {
    return Invalid("y_row_stride is smaller than n");
  }
  if (args.weights == nullptr && args.weight_pointers == nullptr) {
    return Invalid("weights and weight_pointers are both null");
  }

  internal::GroupedGemmParams params;
  params.expert_offsets = args.expert_offsets;
  params.num_experts = static_cast<int32_t>(args.num_experts);
  params.total_rows = static_cast<int32_t>(args.total_rows);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.xp = args.xp;
  params.weights = args.weights;
  params.weight_expert_stride = weight_stride;
  params.weight_pointers = args.weight_pointers;
  params.yp = args.yp;
  params.y_row_stride = args.y_row_stride == 0 ? args.n : args.y_row_stride;
  params.y_float32 = args.y_type == GemmElementType::kFloat32;

  const std::string obstacle = TensorCoreObstacle(args, weight_stride);
  const bool tensor_cores = args.path == GroupedGemmPath::kTensorCore ||
                            (args.path == GroupedGemmPath::kAuto && obstacle.empty());
  cudaError_t error;
  if (tensor_cores) {
    if (!obstacle.empty()) return Invalid("the tensor-core path needs ", obstacle);
    const int64_t max_rows =
        std::min(args.max_rows_per_expert == 0 ? args.total_rows : args.max_rows_per_expert,
                 args.total_rows);
    if ((args.n + internal::kGroupedGemmMinTileColumns - 1) / internal::kGroupedGemmMinTileColumns >
        kMaxGridY) {
      return Invalid("n = ", args.n, " is too large for one launch of the tensor-core path");
    }
    error = internal::LaunchGroupedGemmTensorCore(params, max_rows, stream);
  } else {
    if ((args.n + kSimtColumnsPerBlock - 1) / kSimtColumnsPerBlock > kMaxGridY) {
      return Invalid("n = ", args.n, " is too large for the SIMT path");
    }
    error = internal::LaunchGroupedGemmSimt(params, stream);
  }
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
