#include "kernels/cuda/w8a8_decode_gemm.h"

#include <cstdint>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/w8a8_decode_gemm_launch.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "W8A8 decode GEMM";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

absl::Status Invalid(const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", parts...));
}

}  // namespace

absl::Status GemmW8A8Decode(const DeviceW8A8DecodeGemm& args, cudaStream_t stream) {
  if (args.m < 1 || args.m > 16) return Invalid("m must be in 1..16, got ", args.m);
  if (args.n < 1 || args.n > kMaxInt32) return Invalid("n must be in 1..2^31-1, got ", args.n);
  if (args.k < 16 || args.k % 16 != 0 || args.k > kMaxInt32) {
    return Invalid("k must be a positive multiple of 16, got ", args.k);
  }
  // The reference's bound: |codes| <= 127 on both sides, so every int32 partial sum fits.
  if (args.k * 127 * 127 > kMaxInt32) {
    return absl::OutOfRangeError(absl::StrCat(kName, ": k = ", args.k,
                                              " could overflow int32 accumulation (worst case ",
                                              args.k * 127 * 127, ")"));
  }
  const int64_t y_stride = args.y_stride == 0 ? args.n : args.y_stride;
  if (y_stride < args.n) return Invalid("y_stride = ", y_stride, " is less than n = ", args.n);
  if (args.y_type != GemmElementType::kFloat32 && args.y_type != GemmElementType::kBf16) {
    return Invalid("unknown y_type");
  }
  const bool y_is_bf16 = args.y_type == GemmElementType::kBf16;
  for (auto [name, pointer, aligned] :
       {std::tuple<const char*, const void*, bool>{"x_codes", args.x_codes, true},
        {"x_scales", args.x_scales, false},
        {"w_codes", args.w_codes, true},
        {"w_scales", args.w_scales, false},
        {"y", args.y, false}}) {
    if (pointer == nullptr) return Invalid(name, " is null");
    if (aligned && !Aligned16(pointer)) return Invalid(name, " must be 16-byte aligned");
  }
  if (reinterpret_cast<uintptr_t>(args.y) % (y_is_bf16 ? 2 : 4) != 0) {
    return Invalid("y is not aligned to its element type");
  }
  if (args.kernel != W8A8DecodeKernel::kAuto && args.kernel != W8A8DecodeKernel::kTensorCore &&
      args.kernel != W8A8DecodeKernel::kSimple) {
    return Invalid("unknown kernel");
  }
  internal::W8A8DecodeParams params;
  params.x_codes = args.x_codes;
  params.x_scales = args.x_scales;
  params.w_codes = args.w_codes;
  params.w_scales = args.w_scales;
  params.epilogue_add = args.epilogue_add;
  params.y = args.y;
  params.y_stride = y_stride;
  params.y_is_bf16 = y_is_bf16;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.simple = args.kernel == W8A8DecodeKernel::kSimple;
  if (const cudaError_t error = internal::LaunchW8A8Decode(params, stream); error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
