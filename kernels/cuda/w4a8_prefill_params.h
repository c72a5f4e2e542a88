// The raw prefill/mid-M launchers' parameters from a checked argument struct (host-only): the
// operands as given, the derived stride and flags; variant and group_accumulators are the
// caller's.
#pragma once

#include <cstdint>

#include "kernels/cuda/w4a8_gemm_checks.h"
#include "kernels/cuda/w4a8_prefill_gemm_launch.h"

namespace flatfleet::cuda::internal {

template <typename Args>
W4A8PrefillParams MakeW4A8PrefillParams(const Args& args, const W4A8CheckedShape& shape) {
  const int64_t y_size = shape.y_is_bf16 ? 2 : 4;
  W4A8PrefillParams params;
  params.x_codes = args.x_codes;
  params.x_scales = args.x_scales;
  params.w_words = args.w_words;
  params.w_unsigned_nibbles = args.w_unsigned_nibbles;
  params.w_scales = args.w_scales;
  params.w_zero_points = args.w_zero_points;
  params.epilogue_add = args.epilogue_add;
  params.y = args.y;
  params.y_stride = shape.y_stride;
  params.y_is_bf16 = shape.y_is_bf16;
  // Columns 2j, 2j + 1 of a row form one aligned word when the row starts on a pair boundary.
  params.y_pairs_aligned =
      shape.y_stride % 2 == 0 && reinterpret_cast<uintptr_t>(args.y) % (2 * y_size) == 0;
  params.group_sums_below_2_22 = shape.group_sums_below_2_22;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.group_size = static_cast<int32_t>(args.group_size);
  return params;
}

}  // namespace flatfleet::cuda::internal
