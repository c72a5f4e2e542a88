#include "kernels/cuda/w4a8_fragment_gemm.h"

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/alignment.h"
#include "kernels/cuda/int4_unpack.h"
#include "kernels/cuda/w4a8_fragment_gemm_launch.h"
#include "kernels/cuda/w4a8_fragment_layout.h"
#include "kernels/cuda/w4a8_gemm_checks.h"

namespace flatfleet::cuda {
namespace {

constexpr char kName[] = "W4A8 fragment GEMM";
constexpr char kPackName[] = "W4A8 fragment repack";

absl::Status Invalid(std::string_view name, const auto&... parts) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": ", parts...));
}

// Every split keeps at least this many chunks of 64 K elements per warp: one full ring of loads.
constexpr int64_t kMinChunksPerSplit = 4;

}  // namespace

// The staged rule, from BM_W4A8FragmentStaged and BM_W4A8FragmentStagedSplit on an H200
// (bench/RESULTS.md, session 11). With 2 shared-memory stages of 8 chunks and one block per warp
// (64-channel tiles) the fastest split at one row gave 224-512 CTAs on every layer, about 2 per
// SM (4096 x 4096: 11.1 us at split 4 against 13.6 at the ring's 16; 57344 x 8192: split 1): the
// smallest split dividing the groups with ceil(n / 64) * split >= 1.9 SMs. That split, staged, was
// 0.99-1.54x the ring's rule at 1, 8, 16 and 32 rows on all 16 layers; 8 warps per CTA from
// n >= 14336, else 4: within 6% of the best staged configuration everywhere (geomean 0.6%).
int W4A8FragmentStagedSplit(int64_t n, int64_t k, int64_t group_size, int sm_count) {
  if (n < 1 || group_size <= 0 || k % group_size != 0 || sm_count < 1) return 1;
  const int64_t groups = k / group_size;
  const int64_t chunks_per_group = group_size / 64;
  const int64_t tiles = (n + 63) / 64;
  int chosen = 1;
  for (int split = 1; split <= kW4A8FragmentMaxSplit; ++split) {
    if (groups % split != 0) continue;
    if (split > 1 && groups / split * chunks_per_group < kMinChunksPerSplit) break;
    chosen = split;
    if (10 * tiles * split >= 19 * int64_t{sm_count}) break;
  }
  return chosen;
}

// The register ring's rule (staged_allowed false), from BM_W4A8FragmentGemm on an H200
// (bench/RESULTS.md, session 8): at one row the fastest configurations of every real layer ran
// 400-650 CTAs, about one wave of the 4 CTAs per SM the launch bounds guarantee; fewer left SMs
// idle, more added split partials and second-wave tails. So: the smallest split (dividing the
// groups, leaving each split one ring of chunks) that gives at least 3 CTAs per SM with tiles of
// 128 channels; the largest allowed when none does. Then by m (no effect on the result): up to 8
// rows two blocks per warp and the 4-deep ring; at 9..16 rows the same where the split is at most
// 4 (the tiles give the CTAs: 57344 x 8192, 134 against 188 us with one block), one block per
// warp where it is more (twice the CTAs: 4096 x 4096, 21.7 against 29.7 us); above 16 rows one
// block (the kernel's only choice there) and the 8-deep ring. 4 warps per CTA.
W4A8FragmentConfig ChooseW4A8FragmentConfig(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                            int sm_count, bool staged_allowed) {
  if (staged_allowed) {
    return {.split = W4A8FragmentStagedSplit(n, k, group_size, sm_count),
            .blocks_per_warp = 1,
            .ring_depth = 8,
            .warps_per_cta = n >= 14336 ? 8 : 4,
            .weight_stages = 2};
  }
  W4A8FragmentConfig chosen{.split = 1, .blocks_per_warp = 2, .ring_depth = 4};
  if (n >= 1 && group_size > 0 && k % group_size == 0 && sm_count >= 1) {
    const int64_t groups = k / group_size;
    const int64_t chunks_per_group = group_size / 64;
    const int64_t tile = W4A8FragmentTileChannels(2, 4);
    const int64_t tiles = (n + tile - 1) / tile;
    for (int split = 1; split <= kW4A8FragmentMaxSplit; ++split) {
      if (groups % split != 0) continue;
      if (split > 1 && groups / split * chunks_per_group < kMinChunksPerSplit) break;
      chosen.split = split;
      if (tiles * split >= 3 * int64_t{sm_count}) break;
    }
  }
  if (m > 16) {
    chosen.blocks_per_warp = 1;
    chosen.ring_depth = 8;
  } else if (m > 8 && chosen.split > 4) {
    chosen.blocks_per_warp = 1;
  }
  return chosen;
}

// Where the fragment GEMM measured faster than the earlier kernels on the same operands. Staged
// (session 11: the staged rule in call 3 against the earlier kernels' x_previous in call 2, same
// machine type): above 16 rows everywhere; up to 8 rows from 16M weights (4096 x 4096: 1.12x,
// 1.07x at 8 rows; 3072 x 4096: 0.93x), at 9..16 from 24M (6144 x 4096: 1.21x; 4096 x 4096: 0.92x).
// The ring (session 8): up to 8 rows from 56M weights (14336 x 4096 and up: 1.05-1.35x; 5120 x
// 8192 at one row: 0.94x), at 9..16 from 100M (28672 x 4096 and up: 1.15-1.2x; 8192 x 8192 at 16
// rows: 0.91x).
bool W4A8FragmentWins(int64_t m, int64_t n, int64_t k, bool staged_allowed) {
  if (m > 16) return true;
  const int64_t weights = n * k;
  if (staged_allowed) return weights >= (m <= 8 ? int64_t{16} << 20 : int64_t{24} << 20);
  return m <= 8 ? weights >= int64_t{56} << 20 : weights >= int64_t{100} << 20;
}

int64_t W4A8FragmentPartialFloats(int64_t m, int64_t n, int split) {
  return split > 1 ? int64_t{split} * m * n : 0;
}

int64_t W4A8FragmentCounterCount(int64_t n) {
  const int64_t smallest_tile = W4A8FragmentTileChannels(1, 4);
  return (n + smallest_tile - 1) / smallest_tile;
}

bool W4A8FragmentStagedFits(int64_t m, const W4A8FragmentConfig& config) {
  if (config.weight_stages < 2 || config.weight_stages > 8) return false;
  // The kernel's shape for m rows: above 16 rows one block per warp (w4a8_fragment_gemm.cu).
  const int sets = internal::W4A8FragmentSets(static_cast<int>(m));
  const int blocks = m > 16 ? 1 : config.blocks_per_warp;
  const int64_t bytes =
      int64_t{internal::W4A8FragmentStagedSharedBytes(config.warps_per_cta, blocks,
                                                      config.ring_depth, config.weight_stages)} +
      internal::W4A8FragmentActivationBytes(sets) + 16;
  return bytes <= internal::kW4A8FragmentMaxSharedBytes;
}

W4A8FragmentConfig ResolveW4A8FragmentConfig(const DeviceW4A8FragmentGemm& args,
                                             bool staged_allowed) {
  if (args.config.split != 0) return args.config;
  const int sm_count = args.sm_count > 0 ? args.sm_count : CurrentDeviceSmCount();
  // The bulk copies need 16-byte aligned scale entries; else the register ring (same result).
  return ChooseW4A8FragmentConfig(args.m, args.n, args.k, args.group_size, sm_count,
                                  staged_allowed && AlignedTo(args.w_fragment_scales, 16));
}

absl::Status GemmW4A8Fragment(const DeviceW4A8FragmentGemm& args, cudaStream_t stream) {
  const W4A8GemmFields fields{.m = args.m,
                              .n = args.n,
                              .k = args.k,
                              .group_size = args.group_size,
                              .x_codes = args.x_codes,
                              .x_scales = args.x_scales,
                              .w_words = args.w_fragments,
                              .w_scales = args.w_fragment_scales,
                              // The int32 bound with zero points (|c - z| <= 15) always: the
                              // layout does not say whether the layer has them.
                              .has_zero_points = true,
                              .y = args.y,
                              .y_stride = args.y_stride,
                              .y_type = args.y_type};
  absl::StatusOr<W4A8CheckedShape> shape = CheckW4A8Shape(kName, fields, kW4A8FragmentMaxRows);
  if (!shape.ok()) return shape.status();
  if (args.group_size % 128 != 0) {
    return Invalid(kName, "group_size must be a multiple of 128, got ", args.group_size);
  }
  const W4A8FragmentConfig config = ResolveW4A8FragmentConfig(args);
  const int64_t groups = args.k / args.group_size;
  if (config.split < 1 || config.split > kW4A8FragmentMaxSplit || config.split > groups) {
    return Invalid(kName, "split must be in 1..", kW4A8FragmentMaxSplit, " and at most the ",
                   groups, " groups, got ", config.split);
  }
  if (!W4A8SplitOwnsEveryGroup(groups, config.split)) {
    return Invalid(kName, "split ", config.split, " leaves a split without groups (", groups,
                   " groups)");
  }
  if (config.blocks_per_warp != 1 && config.blocks_per_warp != 2) {
    return Invalid(kName, "blocks_per_warp must be 1 or 2, got ", config.blocks_per_warp);
  }
  if (config.ring_depth != 4 && !(config.ring_depth == 8 && config.blocks_per_warp == 1)) {
    return Invalid(kName, "ring_depth must be 4, or 8 with blocks_per_warp 1, got ",
                   config.ring_depth, " with ", config.blocks_per_warp);
  }
  if (config.warps_per_cta != 4 && config.warps_per_cta != 8) {
    return Invalid(kName, "warps_per_cta must be 4 or 8, got ", config.warps_per_cta);
  }
  if (absl::Status pointers = CheckW4A8FragmentPointers(kName, fields); !pointers.ok()) {
    return pointers;
  }
  if (!args.w_has_zero_points && args.w_unsigned_nibbles) {
    return Invalid(kName,
                   "w_has_zero_points false needs signed nibbles (a symmetric layer), but "
                   "w_unsigned_nibbles is set");
  }
  if (config.weight_stages != 0) {
    if (!W4A8FragmentStagedFits(args.m, config)) {
      return Invalid(kName, "weight_stages must be 0, or 2..8 within one CTA's shared memory (",
                     config.warps_per_cta, " warps, ", config.blocks_per_warp,
                     " block(s) per warp, ring ", config.ring_depth, ", ", args.m, " rows), got ",
                     config.weight_stages);
    }
    if (!AlignedTo(args.w_fragment_scales, 16)) {
      return Invalid(kName, "w_fragment_scales must be 16-byte aligned for weight_stages ",
                     config.weight_stages, " (bulk copies)");
    }
  }
  if (config.split > 1) {
    if (args.split_partials == nullptr) {
      return Invalid(kName, "split ", config.split, " needs split_partials (",
                     W4A8FragmentPartialFloats(args.m, args.n, config.split), " floats)");
    }
    if (args.split_counters == nullptr) {
      return Invalid(kName, "split ", config.split, " needs split_counters (",
                     W4A8FragmentCounterCount(args.n), " zeros)");
    }
  }
  internal::W4A8FragmentParams params;
  params.x_codes = args.x_codes;
  params.x_scales = args.x_scales;
  params.w_fragments = reinterpret_cast<const uint4*>(args.w_fragments);
  params.w_scales = reinterpret_cast<const uint2*>(args.w_fragment_scales);
  params.nibble_flip = args.w_unsigned_nibbles ? kUnsignedNibbleFlip : kSignedNibbleFlip;
  params.zero_points = args.w_has_zero_points;
  params.epilogue_add = args.epilogue_add;
  params.y = args.y;
  params.y_stride = shape->y_stride;
  params.y_is_bf16 = shape->y_is_bf16;
  params.m = static_cast<int32_t>(args.m);
  params.n = static_cast<int32_t>(args.n);
  params.k = static_cast<int32_t>(args.k);
  params.group_size = static_cast<int32_t>(args.group_size);
  params.split = config.split;
  params.warps_per_cta = config.warps_per_cta;
  params.blocks_per_warp = config.blocks_per_warp;
  params.ring_depth = config.ring_depth;
  params.weight_stages = config.weight_stages;
  params.split_partials = args.split_partials;
  params.split_counters = args.split_counters;
  if (const cudaError_t error = internal::LaunchW4A8Fragment(params, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

absl::Status PackW4A8Fragments(const DeviceW4A8Source& source, uint32_t* fragments,
                               uint32_t* fragment_scales, cudaStream_t stream) {
  if (source.n < 1) return Invalid(kPackName, "n must be positive, got ", source.n);
  if (source.k < 64 || source.k % 64 != 0) {
    return Invalid(kPackName, "k must be a positive multiple of 64, got ", source.k);
  }
  if (source.group_size < 64 || source.group_size % 64 != 0 || source.k % source.group_size) {
    return Invalid(kPackName, "group_size must be a multiple of 64 dividing k = ", source.k,
                   ", got ", source.group_size);
  }
  if (source.words == nullptr) return Invalid(kPackName, "words is null");
  if (source.scales == nullptr) return Invalid(kPackName, "scales is null");
  if (fragments == nullptr || !AlignedTo(fragments, 16)) {
    return Invalid(kPackName, "fragments must be a 16-byte aligned buffer");
  }
  if (fragment_scales == nullptr || !AlignedTo(fragment_scales, 8)) {
    return Invalid(kPackName, "fragment_scales must be an 8-byte aligned buffer");
  }
  if (const cudaError_t error =
          internal::LaunchPackW4A8Fragments(source, fragments, fragment_scales, stream);
      error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(kPackName, " launch: ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

HostW4A8Fragments PackW4A8FragmentsOnHost(int64_t n, int64_t k, int64_t group_size,
                                          const std::vector<uint32_t>& words,
                                          const std::vector<uint16_t>& scales,
                                          const std::vector<int8_t>& zero_points) {
  HostW4A8Fragments out;
  out.words.resize(W4A8FragmentWordCount(n, k));
  for (int64_t i = 0; i < static_cast<int64_t>(out.words.size()); ++i) {
    const W4A8FragmentSourceWord source = W4A8FragmentSource(i, k);
    out.words[i] = source.row < n ? words[source.row * (k / 8) + source.word] : 0u;
  }
  const int64_t groups = k / group_size;
  out.scales.resize(W4A8FragmentScaleWordCount(n, k, group_size));
  const int8_t* zeros = zero_points.empty() ? nullptr : zero_points.data();
  for (int64_t i = 0; i < W4A8FragmentBlocks(n) * groups * 8; ++i) {
    const W4A8FragmentScaleEntry entry =
        MakeW4A8FragmentScaleEntry(i, n, groups, scales.data(), zeros);
    out.scales[2 * i] = entry.scales;
    out.scales[2 * i + 1] = entry.zeros;
  }
  return out;
}

}  // namespace flatfleet::cuda
