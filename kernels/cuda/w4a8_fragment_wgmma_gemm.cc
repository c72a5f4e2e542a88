#include "kernels/cuda/w4a8_fragment_wgmma_gemm.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_fragment_wgmma_gemm_launch.h"
#include "kernels/cuda/w4a8_gemm_checks.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "W4A8 fragment wgmma GEMM";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kChannelsPerCta = 128;

absl::Status Invalid(const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", parts...));
}

}  // namespace

bool W4A8FragmentWgmmaApplies(int64_t k, int64_t group_size, bool has_zero_points) {
  const int64_t max_abs_weight = has_zero_points ? 15 : 7;
  return k > 0 && k % 128 == 0 && group_size > 0 && group_size % 128 == 0 && k % group_size == 0 &&
         group_size * 127 * max_abs_weight < (int64_t{1} << 22);
}

// Where the wgmma GEMM measured faster than the mid-M (m <= 256) and prefill kernels on the same
// operands (BM_W4A8FragmentWgmma's x previous, session 9 call 2): 1.2-1.6x at 64..4096 rows on
// every Llama-3-8B / 70B layer, but at 64 rows of the tall layers (n >= 28672: 28672 x 4096 0.95x,
// 57344 x 8192 1.00x) where its 128-channel tiles leave SMs idle and the mid-M kernel does not.
bool W4A8FragmentWgmmaWins(int64_t m, int64_t n, int64_t k) {
  (void)k;
  return m > 64 || n < 28672;
}

// Measured (session 9 call 3, BM_W4A8FragmentWgmma with and without the rule's split): splitting
// pays only with long K at up to 128 rows (4096 x 14336 at 64 / 128 rows: 66.7 / 100.2 us against
// 91.7 / 122.1 unsplit; 8192 x 28672: 173 / 220 against 219 / 250); with K of 4096-8192 or at 256
// rows the split's extra pipeline fills and its reduction cost more than the idle SMs (4096 x 4096
// at 64 rows: 41.4 against 32.5 us).
int ChooseW4A8FragmentWgmmaSplit(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                 int sm_count) {
  if (m > 128 || m < 1 || n < 1 || sm_count < 1 || group_size < 1 || k % group_size != 0 ||
      k / group_size < 96) {
    return 1;
  }
  const int64_t tokens = m <= 64 ? 64 : 128;
  const int64_t tiles = ((m + tokens - 1) / tokens) * ((n + kChannelsPerCta - 1) / kChannelsPerCta);
  const int64_t groups = k / group_size;
  int64_t split = std::min<int64_t>({(sm_count + tiles - 1) / tiles, kW4A8FragmentWgmmaMaxSplit,
                                     std::max<int64_t>(1, groups / 4)});
  while (split > 1 && !W4A8SplitOwnsEveryGroup(groups, split)) --split;
  return static_cast<int>(std::max<int64_t>(1, split));
}

int64_t W4A8FragmentWgmmaPartialFloats(int64_t m, int64_t n, int split) {
  return split > 1 ? int64_t{split} * m * n : 0;
}

int64_t W4A8FragmentWgmmaCounterCount(int64_t m, int64_t n) {
  return ((m + 63) / 64) * ((n + kChannelsPerCta - 1) / kChannelsPerCta);
}

absl::Status GemmW4A8FragmentWgmma(const DeviceW4A8FragmentWgmmaGemm& args, cudaStream_t stream) {
  const W4A8GemmFields fields{.m = args.m,
                              .n = args.n,
                              .k = args.k,
                              .group_size = args.group_size,
                              .x_codes = args.x_codes,
                              .x_scales = args.x_scales,
                              .w_words = args.w_fragments,
                              .w_scales = args.w_fragment_scales,
                              .has_zero_points = args.w_has_zero_points,
                              .y = args.y,
                              .y_stride = args.y_stride,
                              .y_type = args.y_type};
  absl::StatusOr<W4A8CheckedShape> shape = CheckW4A8Shape(kName, fields, kMaxInt32);
  if (!shape.ok()) return shape.status();
  if (args.k % 128 != 0) return Invalid("k must be a multiple of 128, got ", args.k);
  if (args.group_size % 128 != 0) {
    return Invalid("group_size must be a multiple of 128, got ", args.group_size);
  }
  if (!shape->group_sums_below_2_22) {
    return Invalid("group_size * 127 * max |w - zero| must stay below 2^22 (groups up to ",
                   args.w_has_zero_points ? "2176 with" : "4608 without", " zero points), got ",
                   args.group_size);
  }
  int tokens = args.tokens_per_tile;
  if (tokens == 0) tokens = args.m <= 64 ? 64 : 128;
  if (tokens != 64 && tokens != 128) {
    return Invalid("tokens_per_tile must be 0, 64 or 128, got ", args.tokens_per_tile);
  }
  int parts = args.token_parts == 0 ? 2 : args.token_parts;
  if (parts != 2 && parts != 4) {
    return Invalid("token_parts must be 0, 2 or 4, got ", args.token_parts);
  }
  const int64_t groups = args.k / args.group_size;
  int split = args.split;
  if (split == 0) {
    split =
        ChooseW4A8FragmentWgmmaSplit(args.m, args.n, args.k, args.group_size,
                                     args.sm_count > 0 ? args.sm_count : CurrentDeviceSmCount());
  }
  if (split < 1 || split > kW4A8FragmentWgmmaMaxSplit || split > groups) {
    return Invalid("split must be in 1..", kW4A8FragmentWgmmaMaxSplit, " and at most the ", groups,
                   " groups, got ", split);
  }
  if (!W4A8SplitOwnsEveryGroup(groups, split)) {
    return Invalid("split ", split, " leaves a split without groups (", groups, " groups)");
  }
  if (split > 1 && args.split_partials == nullptr) {
    return Invalid("split ", split, " needs split_partials (",
                   W4A8FragmentWgmmaPartialFloats(args.m, args.n, split), " floats)");
  }
  if (split > 1 && args.split_counters == nullptr) {
    return Invalid("split ", split, " needs split_counters (",
                   W4A8FragmentWgmmaCounterCount(args.m, args.n), " zeros)");
  }
  // One CTA per tile and split: a grid of tiles x split.
  if (((args.m + tokens - 1) / tokens) * ((args.n + kChannelsPerCta - 1) / kChannelsPerCta) >
      kMaxInt32) {
    return Invalid("m = ", args.m, " x n = ", args.n, " exceeds one launch");
  }
  if (absl::Status pointers = CheckW4A8FragmentPointers(kName, fields); !pointers.ok()) {
    return pointers;
  }
  if (!CurrentDeviceIsHopper()) {
    return absl::FailedPreconditionError(
        absl::StrCat(kName, ": needs a Hopper GPU (compute capability 9.0, wgmma)"));
  }
  internal::W4A8FragmentWgmmaParams params;
  params.x_codes = args.x_codes;
  params.x_scales = args.x_scales;
  params.w_fragments = reinterpret_cast<const uint4*>(args.w_fragments);
  params.w_scales = reinterpret_cast<const uint2*>(args.w_fragment_scales);
  params.nibble_flip = args.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
  params.epilogue_add = args.epilogue_add;
  params.y = args.y;
  params.y_stride = shape->y_stride;
  params.y_is_bf16 = shape->y_is_bf16;
  // 8 channels of a row start at a multiple of 8 elements: 16-byte aligned when rows are.
  const int64_t y_size = shape->y_is_bf16 ? 2 : 4;
  params.y_vectors_aligned = AlignedTo(args.y, 16) && (shape->y_stride * y_size) % 16 == 0;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.group_size = static_cast<int32_t>(args.group_size);
  params.tokens_per_tile = tokens;
  params.token_parts = parts;
  params.split = split;
  params.split_partials = args.split_partials;
  params.split_counters = args.split_counters;
  if (const cudaError_t error = internal::LaunchW4A8FragmentWgmma(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace flatfleet::cuda
