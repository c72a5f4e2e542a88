#include "kernels/cuda/int8_gemm.h"

#include <cstdint>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/int8_kernels_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxAbsActivation = 127;  // symmetric INT8

absl::Status CheckShape(const char* gemm, int64_t m, int64_t n, int64_t k, int64_t k_multiple,
                        int64_t max_abs_weight) {
  if (m < 0 || n < 0 || k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(gemm, ": bad shape m = ", m, ", n = ", n, ", k = ", k));
  }
  if (m > kMaxInt32 || n > kMaxInt32) {
    return absl::InvalidArgumentError(
        absl::StrCat(gemm, ": m = ", m, " or n = ", n, " exceeds int32"));
  }
  if (k % k_multiple != 0) {
    return absl::InvalidArgumentError(absl::StrCat(gemm, ": k must be a multiple of ", k_multiple,
                                                   " (16-byte weight rows), got k = ", k));
  }
  // The reference's bound: every int32 partial sum stays representable.
  if (k * kMaxAbsActivation * max_abs_weight > kMaxInt32) {
    return absl::OutOfRangeError(absl::StrCat(gemm, ": k = ", k,
                                              " could overflow int32 accumulation (worst case ",
                                              k * kMaxAbsActivation * max_abs_weight, ")"));
  }
  // Grid y counts blocks of at least 16 rows.
  if ((m + 15) / 16 > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(gemm, ": m = ", m, " exceeds one launch"));
  }
  return absl::OkStatus();
}

absl::Status CheckOperand(const char* gemm, const char* name, const void* pointer,
                          bool needs_alignment) {
  if (pointer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(gemm, ": ", name, " is null"));
  }
  if (needs_alignment && !Aligned16(pointer)) {
    return absl::InvalidArgumentError(
        absl::StrCat(gemm, ": ", name, " must be 16-byte aligned (cp.async)"));
  }
  return absl::OkStatus();
}

absl::Status ToStatus(const char* gemm, cudaError_t error) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(gemm, " launch: ", cudaGetErrorString(error)));
}

}  // namespace

absl::Status GemmW8A8(const DeviceW8A8Gemm& args, cudaStream_t stream) {
  constexpr char kName[] = "W8A8 GEMM";
  if (auto s = CheckShape(kName, args.m, args.n, args.k, 16, 127); !s.ok()) return s;
  if (args.m == 0 || args.n == 0) return absl::OkStatus();
  for (auto [name, pointer, aligned] :
       {std::tuple<const char*, const void*, bool>{"x_codes", args.x_codes, true},
        {"x_scales", args.x_scales, false},
        {"w_codes", args.w_codes, true},
        {"w_scales", args.w_scales, false},
        {"y", args.y, false}}) {
    if (auto s = CheckOperand(kName, name, pointer, aligned); !s.ok()) return s;
  }
  internal::GemmParams params;
  params.x_codes = args.x_codes;
  params.x_scales = args.x_scales;
  params.w = args.w_codes;
  params.w_scales = args.w_scales;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.group_size = static_cast<int32_t>(args.k);
  params.y = args.y;
  params.accumulators = args.accumulators;
  return ToStatus(kName, internal::LaunchGemmW8A8(params, stream));
}

absl::Status GemmW4A8(const DeviceW4A8Gemm& args, cudaStream_t stream) {
  constexpr char kName[] = "W4A8 GEMM";
  // |code - zero| <= 15 with zero points, 7 without.
  const int64_t max_abs_weight = args.w_zero_points != nullptr ? 15 : 7;
  if (auto s = CheckShape(kName, args.m, args.n, args.k, 32, max_abs_weight); !s.ok()) return s;
  if (args.group_size <= 0 || args.group_size % 32 != 0 || args.k % args.group_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": group_size must be a multiple of 32 dividing k = ", args.k, ", got ",
                     args.group_size));
  }
  if (args.m == 0 || args.n == 0) return absl::OkStatus();
  for (auto [name, pointer, aligned] :
       {std::tuple<const char*, const void*, bool>{"x_codes", args.x_codes, true},
        {"x_scales", args.x_scales, false},
        {"w_words", args.w_words, true},
        {"w_scales", args.w_scales, false},
        {"y", args.y, false}}) {
    if (auto s = CheckOperand(kName, name, pointer, aligned); !s.ok()) return s;
  }
  internal::GemmParams params;
  params.x_codes = args.x_codes;
  params.x_scales = args.x_scales;
  params.w = args.w_words;
  params.w_unsigned_nibbles = args.w_unsigned_nibbles;
  params.w_scales = args.w_scales;
  params.w_zero_points = args.w_zero_points;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.group_size = static_cast<int32_t>(args.group_size);
  params.y = args.y;
  params.accumulators = args.group_accumulators;
  return ToStatus(kName, internal::LaunchGemmW4A8(params, stream));
}

}  // namespace flatfleet::cuda
