// The argument checks the W4A8 GEMMs (decode, mid-M, prefill) share: shapes, the int32 bound,
// the output's stride and type, and the pointers. Each wrapper runs CheckW4A8Shape first, then its
// own kernel-specific checks, then CheckW4A8Pointers (so a bad shape is reported even when a
// pointer is null too); and the device queries their kernel choices need. Host-only.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/gemm_element_type.h"
#include "kernels/cuda/per_device_attribute.h"  // CurrentDeviceSmCount, CurrentDeviceIsHopper

namespace flatfleet::cuda {

// The fields every W4A8 GEMM's argument struct names alike.
struct W4A8GemmFields {
  int64_t m = 0, n = 0, k = 0, group_size = 0;
  const void* x_codes = nullptr;
  const void* x_scales = nullptr;
  const void* w_words = nullptr;
  const void* w_scales = nullptr;
  bool has_zero_points = false;
  const void* y = nullptr;
  int64_t y_stride = 0;
  GemmElementType y_type = GemmElementType::kFloat32;
};

template <typename Args>
W4A8GemmFields W4A8Fields(const Args& args) {
  return {.m = args.m,
          .n = args.n,
          .k = args.k,
          .group_size = args.group_size,
          .x_codes = args.x_codes,
          .x_scales = args.x_scales,
          .w_words = args.w_words,
          .w_scales = args.w_scales,
          .has_zero_points = args.w_zero_points != nullptr,
          .y = args.y,
          .y_stride = args.y_stride,
          .y_type = args.y_type};
}

// What the shape checks derive.
struct W4A8CheckedShape {
  int64_t y_stride = 0;  // the row stride in elements (y_stride, or n when 0)
  bool y_is_bf16 = false;
  // Every group sum stays below 2^22 in magnitude (group_size * 127 * max |w - zero| < 2^22; max
  // |w - zero| is 15 with zero points, 7 without): the exact magic-number int32 -> float32
  // conversion of the tensor-core kernels applies.
  bool group_sums_below_2_22 = false;
};

// m in 1..max_m, n >= 1, k a positive multiple of 32, group_size a multiple of 32 dividing k, the
// reference's int32 bound (k * 127 * max |w - zero| <= 2^31 - 1: OutOfRange otherwise), y_stride
// >= n and small enough for int64 byte offsets, a known y_type. InvalidArgument naming the field,
// prefixed with `name`.
absl::StatusOr<W4A8CheckedShape> CheckW4A8Shape(std::string_view name, const W4A8GemmFields& args,
                                                int64_t max_m);

// Non-null operands, x_codes and w_words 16-byte aligned, y aligned to its element type.
absl::Status CheckW4A8Pointers(std::string_view name, const W4A8GemmFields& args);

// Whether `split` CTAs over K, each taking ceil(groups / split) whole groups (the last the rest),
// leave none of them without a group: the fragment GEMMs' split of K.
inline bool W4A8SplitOwnsEveryGroup(int64_t groups, int64_t split) {
  return split >= 1 && (split - 1) * ((groups + split - 1) / split) < groups;
}

// The fragment GEMMs' pointers: non-null operands, x_codes and w_fragments 16-byte aligned,
// w_fragment_scales 8-byte aligned, y aligned to its element type. `fields` carries the fragment
// words in w_words and their scales in w_scales.
absl::Status CheckW4A8FragmentPointers(std::string_view name, const W4A8GemmFields& fields);

}  // namespace flatfleet::cuda
