#include "kernels/cuda/w4a8_gemm_checks.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"

namespace flatfleet::cuda {
namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

absl::Status Invalid(std::string_view name, const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": ", parts...));
}

}  // namespace

absl::StatusOr<W4A8CheckedShape> CheckW4A8Shape(std::string_view name, const W4A8GemmFields& args,
                                                int64_t max_m) {
  if (args.m < 1 || args.m > max_m) {
    return Invalid(name, "m must be in 1..",
                   max_m == kMaxInt32 ? std::string("2^31-1") : absl::StrCat(max_m), ", got ",
                   args.m);
  }
  if (args.n < 1 || args.n > kMaxInt32)
    return Invalid(name, "n must be in 1..2^31-1, got ", args.n);
  if (args.k < 32 || args.k % 32 != 0 || args.k > kMaxInt32) {
    return Invalid(name, "k must be a positive multiple of 32, got ", args.k);
  }
  if (args.group_size < 32 || args.group_size % 32 != 0 || args.k % args.group_size != 0) {
    return Invalid(name, "group_size must be a multiple of 32 dividing k = ", args.k, ", got ",
                   args.group_size);
  }
  // The reference's bound: |x code| <= 127, |w code - zero| <= 15 (7 when symmetric), so every
  // int32 partial sum stays representable.
  const int64_t max_abs_weight = args.has_zero_points ? 15 : 7;
  if (args.k * 127 * max_abs_weight > kMaxInt32) {
    return absl::OutOfRangeError(absl::StrCat(std::string(name), ": k = ", args.k,
                                              " could overflow int32 accumulation (worst case ",
                                              args.k * 127 * max_abs_weight, ")"));
  }
  W4A8CheckedShape shape;
  shape.y_stride = args.y_stride == 0 ? args.n : args.y_stride;
  if (shape.y_stride < args.n) {
    return Invalid(name, "y_stride = ", shape.y_stride, " is less than n = ", args.n);
  }
  if (args.y_type != GemmElementType::kFloat32 && args.y_type != GemmElementType::kBf16) {
    return Invalid(name, "unknown y_type");
  }
  if ((args.m - 1) * shape.y_stride + args.n > std::numeric_limits<int64_t>::max() / 4) {
    return Invalid(name, "y_stride = ", shape.y_stride, " is too large");
  }
  shape.y_is_bf16 = args.y_type == GemmElementType::kBf16;
  shape.group_sums_below_2_22 = args.group_size * 127 * max_abs_weight < (int64_t{1} << 22);
  return shape;
}

absl::Status CheckW4A8Pointers(std::string_view name, const W4A8GemmFields& args) {
  for (auto [field, pointer, aligned] :
       {std::tuple<const char*, const void*, bool>{"x_codes", args.x_codes, true},
        {"x_scales", args.x_scales, false},
        {"w_words", args.w_words, true},
        {"w_scales", args.w_scales, false},
        {"y", args.y, false}}) {
    if (pointer == nullptr) return Invalid(name, field, " is null");
    if (aligned && !Aligned16(pointer)) return Invalid(name, field, " must be 16-byte aligned");
  }
  const int64_t y_size = args.y_type == GemmElementType::kBf16 ? 2 : 4;
  if (reinterpret_cast<uintptr_t>(args.y) % y_size != 0) {
    return Invalid(name, "y is not aligned to its element type");
  }
  return absl::OkStatus();
}

absl::Status CheckW4A8FragmentPointers(std::string_view name, const W4A8GemmFields& fields) {
  for (auto [field, pointer, alignment] :
       {std::tuple<const char*, const void*, uintptr_t>{"x_codes", fields.x_codes, 16},
        {"x_scales", fields.x_scales, 1},
        {"w_fragments", fields.w_words, 16},
        {"w_fragment_scales", fields.w_scales, 8},
        {"y", fields.y, 1}}) {
    if (pointer == nullptr) return Invalid(name, field, " is null");
    if (reinterpret_cast<uintptr_t>(pointer) % alignment != 0) {
      return Invalid(name, field, " must be ", alignment, "-byte aligned");
    }
  }
  const int64_t y_size = fields.y_type == GemmElementType::kBf16 ? 2 : 4;
  if (reinterpret_cast<uintptr_t>(fields.y) % y_size != 0) {
    return Invalid(name, "y is not aligned to its element type");
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
