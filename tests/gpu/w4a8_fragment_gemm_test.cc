// The W4A8 fragment GEMM (kernels/cuda/w4a8_fragment_gemm.h) and its weight layout
// (w4a8_fragment_layout.h).
//  * The layout: the host repack puts every INT4 element where the kernel's lanes read it (checked
//    by reading each element back through the documented lane mapping), and the device repack
//    writes the host's words exactly.
//  * split = 1: bit for bit the CPU reference quant::GemmW4A8 followed by the epilogue addition,
//    and today's two-kernel GPU path, in every output configuration (CheckW4A8Case: outputs
//    poisoned first, stride gaps stay poisoned), with 4 and with 8 warps per CTA.
//  * split > 1 (the float partials regrouped): within the header's bound of the reference,
//    |y - y_ref| <= (groups + split) 2^-23 |s_x| sum_g |S_g s_w| (S_g the reference's exact group
//    sums); the epilogue exactly as specified on top of the kernel's own float32 result; the same
//    bits on a second run (no dependence on the schedule), for one row alone and inside a batch
//    (the split does not depend on m), and the counters left zero.
#include "kernels/cuda/w4a8_fragment_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cuda/w4a8_fragment_gemm_launch.h"
#include "kernels/cuda/w4a8_fragment_layout.h"
#include "tests/gpu/decode_gemm_test_util.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/ops_test_util.h"
#include "tests/gpu/w4a8_gemm_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;
using testing::DeviceFragments;
using testing::RandomInt4Weights;

DeviceW4A8FragmentGemm FragmentArgs(int64_t m, int64_t n, int64_t k, int64_t group_size,
                                    const int8_t* x, const uint16_t* x_scales,
                                    const DeviceFragments& f, bool unsigned_nibbles) {
  DeviceW4A8FragmentGemm args;
  args.m = m;
  args.n = n;
  args.k = k;
  args.group_size = group_size;
  args.x_codes = x;
  args.x_scales = x_scales;
  args.w_fragments = f.words.get();
  args.w_fragment_scales = f.scales.get();
  args.w_unsigned_nibbles = unsigned_nibbles;
  return args;
}

// ---- The layout (host only) ----

// Element (row, kk) of the weights as the kernel reads it: lane 4g + t of block row / 16, chunk
// kk / 64, word q = 2 (half) + (g != row % 16), nibble per int4_interleaved.h.
int32_t FragmentElement(const HostW4A8Fragments& f, int64_t k, int64_t row, int64_t kk) {
  const int64_t block = row / 16, in_block = row % 16;
  const int64_t g = in_block % 8, chunk = kk / 64, within = kk % 64;
  const int64_t half = within / 32, t = (within % 32) / 8, e = within % 8;
  const int64_t q = 2 * half + in_block / 8;
  const uint32_t word = f.words[((block * (k / 64) + chunk) * 32 + 4 * g + t) * 4 + q];
  const int byte = static_cast<int>(e % 4), high = e >= 4 ? 4 : 0;
  return static_cast<int32_t>((word >> (8 * byte + high)) & 0xf);
}

TEST(W4A8FragmentLayoutTest, EveryElementIsWhereTheKernelReadsIt) {
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (const auto& [n, k, group_size, zero_points] :
       {std::tuple{37, 256, 128, true}, std::tuple{16, 128, 128, false},
        std::tuple{130, 1024, 256, true}, std::tuple{5, 384, 384, false}}) {
    SCOPED_TRACE(absl::StrCat("n ", n, " k ", k, " group ", group_size));
    const auto w = RandomInt4Weights(n, k, group_size, zero_points, rng);
    const auto packed = quant::PackInt4Matrix(w);
    ASSERT_TRUE(packed.ok()) << packed.status();
    const HostW4A8Fragments f =
        PackW4A8FragmentsOnHost(n, k, group_size, packed->words, w.scales, w.zero_points);
    ASSERT_EQ(static_cast<int64_t>(f.words.size()), W4A8FragmentWordCount(n, k));
    const bool is_unsigned = packed->signedness == quant::Signedness::kUnsigned;
    for (int64_t row = 0; row < W4A8FragmentBlocks(n) * 16; ++row) {
      for (int64_t kk = 0; kk < k; ++kk) {
        const int32_t nibble = FragmentElement(f, k, row, kk);
        if (row >= n) {
          ASSERT_EQ(nibble, 0) << "row " << row << " past n";
          continue;
        }
        const int32_t code = is_unsigned ? nibble - 8 : (nibble ^ 8) - 8;
        ASSERT_EQ(code, w.codes[row * k + kk]) << "row " << row << " k " << kk;
      }
    }
    const int64_t groups = k / group_size;
    for (int64_t row = 0; row < W4A8FragmentBlocks(n) * 16; ++row) {
      for (int64_t group = 0; group < groups; ++group) {
        const int64_t entry = ((row / 16) * groups + group) * 8 + row % 8;
        const int half = (row % 16) / 8;
        const uint16_t scale = static_cast<uint16_t>(f.scales[2 * entry] >> (16 * half));
        const int8_t zero = static_cast<int8_t>(f.scales[2 * entry + 1] >> (8 * half));
        ASSERT_EQ(scale, static_cast<uint16_t>(row < n ? w.scales[row * groups + group] : 0))
            << row << " " << group;
        ASSERT_EQ(zero, static_cast<int8_t>(
                            row < n && zero_points ? w.zero_points[row * groups + group] : 0));
      }
    }
  }
}

TEST(W4A8FragmentConfigTest, FollowsTheDocumentedRingRule) {
  // The register ring's rule (staged not allowed). H200: 132 SMs, at least 396 CTAs of
  // 128-channel tiles wanted.
  auto config = [](int64_t m, int64_t n, int64_t k) {
    return ChooseW4A8FragmentConfig(m, n, k, 128, 132, /*staged_allowed=*/false);
  };
  EXPECT_EQ(config(1, 57344, 8192).split, 1);  // 448 tiles
  EXPECT_EQ(config(1, 28672, 4096).split, 2);  // 224 tiles: 448
  EXPECT_EQ(config(1, 14336, 4096).split, 4);  // 112 tiles: 448
  EXPECT_EQ(config(1, 8192, 8192).split, 8);   // 64 tiles: 512
  EXPECT_EQ(config(1, 8192, 28672).split, 7);  // 224 groups: 7 is the first divisor reaching 448
  EXPECT_EQ(config(1, 4096, 4096).split, 16);  // 32 tiles: 512
  EXPECT_EQ(config(1, 4096, 2048).split, 8);   // 16 groups: 8 splits of 2 (4 chunks), 256 CTAs
  // A split keeps at least 4 chunks (2 groups of 128): k = 512 splits at most in 2.
  EXPECT_EQ(ChooseW4A8FragmentConfig(1, 64, 512, 128, 132, false).split, 2);
  // Per channel (one group): never split.
  EXPECT_EQ(ChooseW4A8FragmentConfig(1, 64, 4096, 4096, 132, false).split, 1);
  // The split never depends on m; blocks per warp and ring depth do.
  for (int64_t m : {1, 7, 8, 9, 16, 17, 32}) {
    const W4A8FragmentConfig c = config(m, 8192, 8192);  // split 8
    EXPECT_EQ(c.split, 8) << m;
    EXPECT_EQ(c.blocks_per_warp, m <= 8 ? 2 : 1) << m;
    EXPECT_EQ(c.ring_depth, m <= 16 ? 4 : 8) << m;
    EXPECT_EQ(c.weight_stages, 0) << m;
    EXPECT_EQ(c.warps_per_cta, 4) << m;
    const W4A8FragmentConfig wide = config(m, 57344, 8192);  // split 1
    EXPECT_EQ(wide.split, 1) << m;
    EXPECT_EQ(wide.blocks_per_warp, m <= 16 ? 2 : 1) << m;
  }
  // Where it replaces the earlier kernels.
  EXPECT_TRUE(W4A8FragmentWins(1, 14336, 4096, false));
  EXPECT_FALSE(W4A8FragmentWins(1, 5120, 8192, false));
  EXPECT_FALSE(W4A8FragmentWins(16, 8192, 8192, false));
  EXPECT_TRUE(W4A8FragmentWins(16, 28672, 4096, false));
  EXPECT_TRUE(W4A8FragmentWins(17, 64, 128, false));
}

TEST(W4A8FragmentConfigTest, FollowsTheDocumentedStagedRule) {
  // The default: W4A8FragmentStagedSplit, 2 stages of 8 chunks, one block per warp, 8 warps from
  // n >= 14336, at every m (the split and all).
  for (int64_t m : {1, 8, 9, 16, 17, 32}) {
    for (const auto& [n, k, split, warps] :
         {std::tuple{57344, 8192, 1, 8}, std::tuple{8192, 8192, 2, 4},
          std::tuple{14336, 4096, 2, 8}, std::tuple{4096, 4096, 4, 4}}) {
      const W4A8FragmentConfig c = ChooseW4A8FragmentConfig(m, n, k, 128, 132);
      EXPECT_EQ(c.split, split) << m << " x " << n << " x " << k;
      EXPECT_EQ(c.split, W4A8FragmentStagedSplit(n, k, 128, 132));
      EXPECT_EQ(c.weight_stages, 2);
      EXPECT_EQ(c.ring_depth, 8);
      EXPECT_EQ(c.blocks_per_warp, 1);
      EXPECT_EQ(c.warps_per_cta, warps) << n;
      EXPECT_TRUE(W4A8FragmentStagedFits(m, c));
    }
  }
  // Where it replaces the earlier kernels: up to 8 rows from 16M weights, 9..16 from 24M.
  EXPECT_TRUE(W4A8FragmentWins(8, 4096, 4096));
  EXPECT_FALSE(W4A8FragmentWins(8, 3072, 4096));
  EXPECT_FALSE(W4A8FragmentWins(9, 4096, 4096));
  EXPECT_TRUE(W4A8FragmentWins(16, 6144, 4096));
  EXPECT_TRUE(W4A8FragmentWins(17, 64, 128));

  DeviceW4A8FragmentGemm args;
  args.m = 16;
  args.n = 57344;
  args.k = 8192;
  args.group_size = 128;
  args.sm_count = 132;
  // Staged only with 16-byte aligned scale entries (the bulk copies') and when allowed; else the
  // ring's own rule.
  args.w_fragment_scales = testing::FakeDevicePointer<uint32_t>();
  EXPECT_EQ(ResolveW4A8FragmentConfig(args).weight_stages, 2);
  EXPECT_EQ(ResolveW4A8FragmentConfig(args).warps_per_cta, 8);
  EXPECT_EQ(ResolveW4A8FragmentConfig(args, /*staged_allowed=*/false).weight_stages, 0);
  EXPECT_EQ(ResolveW4A8FragmentConfig(args, false).blocks_per_warp, 2);
  args.w_fragment_scales = testing::FakeDevicePointer<uint32_t>(8);
  EXPECT_EQ(ResolveW4A8FragmentConfig(args).weight_stages, 0);
  EXPECT_EQ(ResolveW4A8FragmentConfig(args).blocks_per_warp, 2);
  EXPECT_EQ(ResolveW4A8FragmentConfig(args).ring_depth, 4);
  EXPECT_EQ(ResolveW4A8FragmentConfig(args).split, 1);
  args.config = {.split = 2, .blocks_per_warp = 1, .ring_depth = 8, .warps_per_cta = 8};
  EXPECT_EQ(ResolveW4A8FragmentConfig(args).warps_per_cta, 8);  // as given
}

// The staged path's split: the smallest dividing the groups (every split at least 4 chunks) with
// ceil(n / 64) * split >= 1.9 * SMs (251 CTAs on 132 SMs).
TEST(W4A8FragmentConfigTest, StagedSplitFollowsTheDocumentedRule) {
  auto split = [](int64_t n, int64_t k) { return W4A8FragmentStagedSplit(n, k, 128, 132); };
  EXPECT_EQ(split(57344, 8192), 1);                            // 896 tiles
  EXPECT_EQ(split(28672, 4096), 1);                            // 448
  EXPECT_EQ(split(14336, 4096), 2);                            // 224 tiles: 448
  EXPECT_EQ(split(8192, 8192), 2);                             // 128 tiles: 256
  EXPECT_EQ(split(4096, 4096), 4);                             // 64 tiles: 256
  EXPECT_EQ(split(3072, 4096), 8);                             // 48 tiles: 192 at 4, 384 at 8
  EXPECT_EQ(split(4096, 7168), 4);                             // 56 groups: 4 divides them
  EXPECT_EQ(split(8192, 28672), 2);                            // 224 groups
  EXPECT_EQ(W4A8FragmentStagedSplit(64, 512, 128, 132), 2);    // 4 groups of 2 chunks: at most 2
  EXPECT_EQ(W4A8FragmentStagedSplit(64, 4096, 4096, 132), 1);  // per channel: one group
}

// The staged path's shared memory: stages x warps x blocks x (ring_depth chunks of 512 bytes and
// ring_depth / 2 + 1 groups of 64), the barriers, and the activation buffers of m rows, against
// one CTA's 232448 bytes.
TEST(W4A8FragmentConfigTest, StagedSharedMemoryFitsOneCta) {
  auto staged = [](int warps, int blocks, int depth, int stages) {
    return W4A8FragmentConfig{.split = 1,
                              .blocks_per_warp = blocks,
                              .ring_depth = depth,
                              .warps_per_cta = warps,
                              .weight_stages = stages};
  };
  // 4 warps, 2 blocks, ring 4: 4480 bytes a warp's stage; 8 stages 143,360 + 256 + 16,912.
  EXPECT_EQ(internal::W4A8FragmentStagedSharedBytes(4, 2, 4, 8), 143360 + 256);
  EXPECT_TRUE(W4A8FragmentStagedFits(1, staged(4, 2, 4, 8)));
  // 8 warps: 286,720 bytes of stages.
  EXPECT_FALSE(W4A8FragmentStagedFits(1, staged(8, 2, 4, 8)));
  // 8 warps, 2 blocks, 5 stages at 9..16 rows: 179,200 + 320 + 33,808 fits; 6 stages do not.
  EXPECT_TRUE(W4A8FragmentStagedFits(16, staged(8, 2, 4, 5)));
  EXPECT_FALSE(W4A8FragmentStagedFits(16, staged(8, 2, 4, 6)));
  // Above 16 rows the kernel takes one block per warp whatever the config says.
  EXPECT_TRUE(W4A8FragmentStagedFits(32, staged(8, 2, 4, 6)));
  EXPECT_FALSE(W4A8FragmentStagedFits(1, staged(4, 1, 4, 1)));
  EXPECT_FALSE(W4A8FragmentStagedFits(1, staged(4, 1, 4, 9)));
  EXPECT_FALSE(W4A8FragmentStagedFits(1, staged(4, 1, 4, 0)));
}

TEST(W4A8FragmentConfigTest, CountersCoverEveryTile) {
  EXPECT_EQ(W4A8FragmentTileChannels(1, 4), 64);
  EXPECT_EQ(W4A8FragmentTileChannels(2, 4), 128);
  EXPECT_EQ(W4A8FragmentTileChannels(1, 8), 128);
  EXPECT_EQ(W4A8FragmentTileChannels(2, 8), 256);
  for (int64_t n : {1, 16, 63, 64, 65, 77, 130, 255, 256, 257, 1000, 57344}) {
    for (int warps : {4, 8}) {
      for (int blocks : {1, 2}) {
        const int64_t tile = W4A8FragmentTileChannels(blocks, warps);
        EXPECT_GE(W4A8FragmentCounterCount(n), (n + tile - 1) / tile)
            << "n " << n << ", " << warps << " warps, " << blocks << " block(s)";
      }
    }
  }
}

TEST(W4A8FragmentGemmArgsTest, RejectsWhatItCannotRun) {
  auto base = [] {
    DeviceW4A8FragmentGemm args;
    args.m = 4;
    args.n = 64;
    args.k = 512;
    args.group_size = 128;
    args.x_codes = testing::FakeDevicePointer<int8_t>();
    args.x_scales = testing::FakeDevicePointer<uint16_t>();
    args.w_fragments = testing::FakeDevicePointer<uint32_t>();
    args.w_fragment_scales = testing::FakeDevicePointer<uint32_t>();
    args.y = nullptr;  // every call below must stop before launching
    args.config = {.split = 1, .blocks_per_warp = 2, .ring_depth = 4};
    return args;
  };
  using testing::StatusMentions;
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  auto args = base();
  args.m = 33;
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "m must be"));
  args = base();
  args.group_size = 64;
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "multiple of 128"));
  args = base();
  args.config.split = 5;  // 4 groups
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "split must be"));
  args = base();
  args.config.split = 3;  // 4 groups: 2, 2, none
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "without groups"));
  args = base();
  args.config.blocks_per_warp = 3;
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "blocks_per_warp"));
  args = base();
  args.config.ring_depth = 8;  // with 2 blocks per warp
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "ring_depth"));
  for (int warps : {0, 2, 6, 16}) {
    args = base();
    args.config.warps_per_cta = warps;
    EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "warps_per_cta"))
        << warps;
  }
  args = base();
  args.config.warps_per_cta = 8;  // valid: the checks go on to the null output
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "y is null"));
  args = base();
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "y is null"));
  args = base();
  args.y = testing::FakeDevicePointer<float>();
  args.config.split = 2;
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "split_partials"));
  args.split_partials = testing::FakeDevicePointer<float>();
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "split_counters"));
  for (int stages : {1, 9, -1}) {
    args = base();
    args.y = testing::FakeDevicePointer<float>();
    args.config.weight_stages = stages;
    EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "weight_stages must"))
        << stages;
  }
  args = base();
  args.y = testing::FakeDevicePointer<float>();
  args.config = {.split = 1, .blocks_per_warp = 2, .ring_depth = 4, .weight_stages = 4};
  args.w_fragment_scales = testing::FakeDevicePointer<uint32_t>(8);  // the register ring's minimum
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid,
                             "w_fragment_scales must be 16-byte aligned for weight_stages 4"));
  args = base();
  args.y = testing::FakeDevicePointer<float>();
  args.w_has_zero_points = false;
  args.w_unsigned_nibbles = true;
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "needs signed nibbles"));
  args = base();
  args.y = testing::FakeDevicePointer<float>();
  args.w_fragments = testing::FakeDevicePointer<uint32_t>(4);
  EXPECT_TRUE(StatusMentions(GemmW4A8Fragment(args, nullptr), kInvalid, "16-byte aligned"));
  EXPECT_TRUE(StatusMentions(
      PackW4A8Fragments({.n = 16, .k = 96, .group_size = 32}, nullptr, nullptr, nullptr), kInvalid,
      "multiple of 64"));
}

// ---- On the device ----

TEST(W4A8FragmentLayoutGpuTest, DeviceRepackEqualsTheHosts) {
  FF_SKIP_WITHOUT_GPU();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  for (const auto& [n, k, group_size, zero_points] :
       {std::tuple{77, 1024, 128, true}, std::tuple{4096, 4096, 128, false},
        std::tuple{19, 640, 640, true}}) {
    const auto w = RandomInt4Weights(n, k, group_size, zero_points, rng);
    const auto packed = quant::PackInt4Matrix(w);
    ASSERT_TRUE(packed.ok()) << packed.status();
    const HostW4A8Fragments want =
        PackW4A8FragmentsOnHost(n, k, group_size, packed->words, w.scales, w.zero_points);
    DeviceBuffer<uint32_t> words(packed->words);
    DeviceBuffer<uint16_t> scales(w.scales);
    DeviceBuffer<int8_t> zeros(zero_points ? w.zero_points : std::vector<int8_t>{0});
    DeviceFragments f(n, k, group_size);
    FF_CUDA_ASSERT(cudaMemset(f.words.get(), 0xff, want.words.size() * 4));
    FF_CUDA_ASSERT(cudaMemset(f.scales.get(), 0xff, want.scales.size() * 4));
    ASSERT_TRUE(PackW4A8Fragments({.n = n,
                                   .k = k,
                                   .group_size = group_size,
                                   .words = words.get(),
                                   .scales = scales.get(),
                                   .zero_points = zero_points ? zeros.get() : nullptr},
                                  f.words.get(), f.scales.get(), nullptr)
                    .ok());
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_EQ(f.words.ToHost(), want.words) << n << " x " << k;
    EXPECT_EQ(f.scales.ToHost(), want.scales) << n << " x " << k;
  }
}

// split = 1 (both blocks_per_warp, both ring depths, 4 and 8 warps per CTA, the register ring and
// 2..8 shared-memory weight stages): the reference's computation, bit for bit.
class W4A8FragmentUnsplitGpuTest : public ::testing::TestWithParam<testing::W4A8Case> {};

TEST_P(W4A8FragmentUnsplitGpuTest, MatchesTheReferenceBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const testing::W4A8Case c = GetParam();
  std::vector<testing::W4A8Run> runs;
  for (const auto& [warps_per_cta, blocks_per_warp, ring_depth, weight_stages] :
       {std::tuple{4, 1, 4, 0}, std::tuple{4, 2, 4, 0}, std::tuple{4, 1, 8, 0},
        std::tuple{8, 1, 4, 0}, std::tuple{8, 2, 4, 0}, std::tuple{8, 1, 8, 0},
        std::tuple{4, 2, 4, 4}, std::tuple{4, 1, 8, 2}, std::tuple{4, 1, 4, 8},
        std::tuple{8, 2, 4, 3}, std::tuple{8, 1, 8, 3}}) {
    // Symmetric weights run both ways: told so (the shifted unpack) and not (the zero points').
    for (const bool zero_point_path : {true, false}) {
      if (c.zero_points && !zero_point_path) continue;
      runs.push_back(
          {.name = absl::StrCat("split 1, ", warps_per_cta, " warps, ", blocks_per_warp,
                                " block(s) per warp, ring ", ring_depth, ", ", weight_stages,
                                " weight stages, zero-point path ", zero_point_path),
           .launch = [c, warps_per_cta, blocks_per_warp, ring_depth, weight_stages,
                      zero_point_path](const testing::W4A8DeviceOperands& d,
                                       const testing::W4A8Output& out) -> absl::Status {
             DeviceFragments f(c.n, c.k, c.group_size);
             if (absl::Status packed = testing::RepackW4A8Fragments(c, d, f); !packed.ok())
               return packed;
             DeviceW4A8FragmentGemm args = FragmentArgs(c.m, c.n, c.k, c.group_size, d.x.get(),
                                                        d.x_scales.get(), f, d.unsigned_nibbles);
             args.w_has_zero_points = zero_point_path;
             args.epilogue_add = out.with_add ? d.add.get() : nullptr;
             args.y = out.y;
             args.y_stride = out.y_stride;
             args.y_type = out.y_type;
             args.config = {.split = 1,
                            .blocks_per_warp = blocks_per_warp,
                            .ring_depth = ring_depth,
                            .warps_per_cta = warps_per_cta,
                            .weight_stages = weight_stages};
             absl::Status status = GemmW4A8Fragment(args, nullptr);
             if (status.ok() && cudaDeviceSynchronize() != cudaSuccess) {
               status = absl::InternalError("kernel failed");
             }
             return status;  // f is freed after the kernel is done
           },
           .check_after = nullptr});
    }
  }
  testing::CheckW4A8Case(c, runs);
}

// Every row set (1..8, 9..16, 17..32 rows), n not a multiple of 16 or 64, group sizes 128, 256,
// 384 and per channel, slices of 1024 (or 512) K elements cut in the middle of a group, zero
// points and symmetric. With 8 warps the tails leave whole warps past n: n = 77 fills 5 of a
// 128-channel tile's 8 warps (3 of a 256-channel one's), 200 a second 128-channel tile's first 5,
// 257 one channel of a second 256-channel tile.
INSTANTIATE_TEST_SUITE_P(Shapes, W4A8FragmentUnsplitGpuTest,
                         ::testing::Values(testing::W4A8Case{1, 64, 256, 128, false, true},
                                           testing::W4A8Case{1, 77, 4096, 128, true, true},
                                           testing::W4A8Case{3, 130, 1536, 384, false, true},
                                           testing::W4A8Case{8, 200, 2048, 256, true, true},
                                           testing::W4A8Case{9, 33, 1280, 128, false, true},
                                           testing::W4A8Case{16, 257, 4096, 4096, true, true},
                                           testing::W4A8Case{17, 70, 1152, 384, true, true},
                                           testing::W4A8Case{32, 129, 2560, 128, false, true},
                                           testing::W4A8Case{24, 16, 640, 128, true, true}),
                         [](const auto& info) { return testing::W4A8CaseName(info.param); });

// Runs the case's GEMM with `config` three times (the three outputs), the device workspace and
// counters given (counters checked zero after each call).
void RunSplit(const testing::W4A8Case& c, const testing::W4A8DeviceOperands& d,
              const DeviceFragments& f, W4A8FragmentConfig config, testing::W4A8SplitOutputs& run) {
  DeviceBuffer<float> partials(
      std::max<int64_t>(1, W4A8FragmentPartialFloats(c.m, c.n, config.split)));
  const std::vector<int32_t> zeros(W4A8FragmentCounterCount(c.n), 0);
  DeviceBuffer<int32_t> counters(zeros);
  DeviceBuffer<float> y(c.m * c.n);
  DeviceBuffer<uint16_t> y_bf16(c.m * c.n);
  ASSERT_NE(y.get(), nullptr) << "out of device memory";
  DeviceW4A8FragmentGemm args =
      FragmentArgs(c.m, c.n, c.k, c.group_size, d.x.get(), d.x_scales.get(), f, d.unsigned_nibbles);
  args.w_has_zero_points = c.zero_points;  // symmetric cases: the shifted unpack
  args.config = config;
  args.split_partials = partials.get();
  args.split_counters = counters.get();
  for (int pass = 0; pass < 3; ++pass) {
    args.epilogue_add = pass == 0 ? nullptr : d.add.get();
    args.y = pass == 2 ? static_cast<void*>(y_bf16.get()) : y.get();
    args.y_type = pass == 2 ? GemmElementType::kBf16 : GemmElementType::kFloat32;
    FF_CUDA_ASSERT(cudaMemset(args.y, 0xff, c.m * c.n * (pass == 2 ? 2 : 4)));
    const absl::Status status = GemmW4A8Fragment(args, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    ASSERT_EQ(counters.ToHost(), zeros) << "the counters must be left zero";
    if (pass == 0) run.plain = y.ToHost();
    if (pass == 1) run.with_add = y.ToHost();
    if (pass == 2) run.bf16 = y_bf16.ToHost();
  }
}

struct SplitCase {
  testing::W4A8Case shape;
  W4A8FragmentConfig config;  // split 0: the auto rule
};

class W4A8FragmentSplitGpuTest : public ::testing::TestWithParam<SplitCase> {};

TEST_P(W4A8FragmentSplitGpuTest, StaysWithinTheBoundAndIsDeterministic) {
  FF_SKIP_WITHOUT_GPU();
  const testing::W4A8Case c = GetParam().shape;
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const auto x = testing::RandomInt8PerRow(c.m, c.k, rng);
  const auto w = RandomInt4Weights(c.n, c.k, c.group_size, c.zero_points, rng);
  std::vector<float> add(c.n);
  for (float& v : add) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  const auto expected = quant::GemmW4A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const testing::W4A8DeviceOperands d = testing::UploadW4A8Operands(x, w, *packed, add);
  DeviceFragments f(c.n, c.k, c.group_size);
  ASSERT_TRUE(testing::RepackW4A8Fragments(c, d, f).ok());
  DeviceW4A8FragmentGemm probe;
  probe.m = c.m;
  probe.n = c.n;
  probe.k = c.k;
  probe.group_size = c.group_size;
  probe.config = GetParam().config;
  const W4A8FragmentConfig config = ResolveW4A8FragmentConfig(probe);
  SCOPED_TRACE(absl::StrCat("split ", config.split, ", ", config.warps_per_cta, " warps, ",
                            config.blocks_per_warp, " block(s) per warp, ring ", config.ring_depth,
                            ", ", config.weight_stages, " weight stages"));

  testing::W4A8SplitOutputs first, second;
  RunSplit(c, d, f, config, first);
  RunSplit(c, d, f, config, second);
  if (HasFatalFailure()) return;
  testing::ExpectW4A8SplitWithinBound(x, w, *expected, add, config.split, first);
  if (HasFatalFailure()) return;
  EXPECT_EQ(std::memcmp(first.plain.data(), second.plain.data(), first.plain.size() * 4), 0)
      << "a second run gave other bits";
  EXPECT_EQ(first.bf16, second.bf16);

  // Row 0 alone (m = 1, the same split): the batch's bits.
  const testing::W4A8Case alone{1, c.n, c.k, c.group_size, c.zero_points, true};
  testing::W4A8SplitOutputs single;
  RunSplit(alone, d, f, config, single);
  if (HasFatalFailure()) return;
  EXPECT_EQ(std::memcmp(single.plain.data(), first.plain.data(), c.n * 4), 0)
      << "row 0 alone differs from row 0 in the batch";
}

// Splits 2..16 on both block counts, 4 and 8 warps per CTA, uneven tails (n = 77, 130, 1000; with
// 8 warps whole warps of the last tile past n), the auto rule on the real layers (group 128):
// Llama-3-8B q/k/v, o, gate|up, down; the 70B's at m = 1..4 (the CPU reference with every group's
// sums is 470M weights per row).
INSTANTIATE_TEST_SUITE_P(
    Shapes, W4A8FragmentSplitGpuTest,
    ::testing::Values(
        SplitCase{{1, 77, 1024, 128, true, true}, {.split = 2, .blocks_per_warp = 2}},
        SplitCase{{5, 130, 2048, 128, false, true}, {.split = 4, .blocks_per_warp = 1}},
        SplitCase{{7, 90, 2048, 128, true, true},
                  {.split = 2, .blocks_per_warp = 1, .ring_depth = 8}},
        SplitCase{{13, 200, 3072, 128, false, true},
                  {.split = 3, .blocks_per_warp = 1, .ring_depth = 8}},
        SplitCase{{16, 1000, 4096, 128, true, true}, {.split = 16, .blocks_per_warp = 2}},
        SplitCase{{12, 200, 3072, 384, false, true}, {.split = 8, .blocks_per_warp = 1}},
        SplitCase{{32, 130, 4096, 256, true, true}, {.split = 4, .blocks_per_warp = 2}},
        SplitCase{{24, 64, 14336, 128, false, true}, {.split = 14, .blocks_per_warp = 1}},
        SplitCase{{32, 77, 4096, 128, true, true},
                  {.split = 4, .blocks_per_warp = 1, .ring_depth = 8}},
        SplitCase{{1, 77, 1024, 128, true, true},
                  {.split = 2, .blocks_per_warp = 2, .warps_per_cta = 8}},
        SplitCase{{5, 130, 2048, 128, false, true},
                  {.split = 4, .blocks_per_warp = 1, .warps_per_cta = 8}},
        SplitCase{{7, 90, 2048, 128, true, true},
                  {.split = 2, .blocks_per_warp = 1, .ring_depth = 8, .warps_per_cta = 8}},
        SplitCase{{13, 200, 3072, 128, false, true},
                  {.split = 3, .blocks_per_warp = 1, .ring_depth = 8, .warps_per_cta = 8}},
        SplitCase{{16, 1000, 4096, 128, true, true},
                  {.split = 16, .blocks_per_warp = 2, .warps_per_cta = 8}},
        SplitCase{{12, 200, 3072, 384, false, true},
                  {.split = 8, .blocks_per_warp = 2, .warps_per_cta = 8}},
        SplitCase{{24, 64, 14336, 128, false, true},
                  {.split = 14, .blocks_per_warp = 1, .warps_per_cta = 8}},
        SplitCase{{32, 77, 4096, 128, true, true},
                  {.split = 4, .blocks_per_warp = 1, .ring_depth = 8, .warps_per_cta = 8}},
        SplitCase{{8, 4096, 4096, 128, false, true},
                  {.split = 8, .blocks_per_warp = 2, .warps_per_cta = 8}},
        SplitCase{{1, 77, 1024, 128, true, true},
                  {.split = 2, .blocks_per_warp = 2, .ring_depth = 4, .weight_stages = 4}},
        SplitCase{{13, 200, 3072, 384, false, true},
                  {.split = 3, .blocks_per_warp = 1, .ring_depth = 8, .weight_stages = 3}},
        SplitCase{{16, 1000, 4096, 128, true, true},
                  {.split = 16,
                   .blocks_per_warp = 2,
                   .ring_depth = 4,
                   .warps_per_cta = 8,
                   .weight_stages = 2}},
        SplitCase{{24, 64, 14336, 128, false, true},
                  {.split = 14, .blocks_per_warp = 1, .ring_depth = 4, .weight_stages = 6}},
        SplitCase{{4, 8192, 8192, 128, true, true},
                  {.split = 8, .blocks_per_warp = 2, .ring_depth = 4, .weight_stages = 4}},
        SplitCase{{2, 6144, 4096, 128, true, true}, {.split = 0}},
        SplitCase{{16, 4096, 4096, 128, false, true}, {.split = 0}},
        SplitCase{{8, 28672, 4096, 128, true, true}, {.split = 0}},
        SplitCase{{4, 4096, 14336, 128, false, true}, {.split = 0}},
        SplitCase{{1, 57344, 8192, 128, true, true}, {.split = 0}},
        SplitCase{{2, 8192, 28672, 128, false, true}, {.split = 0}},
        SplitCase{{3, 10240, 8192, 128, true, true}, {.split = 0}}),
    [](const auto& info) {
      return absl::StrCat(testing::W4A8CaseName(info.param.shape), "_split",
                          info.param.config.split, "_b", info.param.config.blocks_per_warp, "_d",
                          info.param.config.ring_depth, "_w", info.param.config.warps_per_cta, "_s",
                          info.param.config.weight_stages);
    });

// The launch bounds' CTAs per SM: 4 of 4 warps (the rule counts on them), 2 of 8 warps.
TEST(W4A8FragmentResidencyGpuTest, MeetsTheLaunchBoundsTheRuleCountsOn) {
  FF_SKIP_WITHOUT_GPU();
  for (int rows : {1, 16, 32}) {
    for (int warps : {4, 8}) {
      for (const auto& [blocks, depth] : {std::pair{1, 4}, std::pair{2, 4}, std::pair{1, 8}}) {
        EXPECT_GE(internal::W4A8FragmentResidentCtas(rows, warps, blocks, depth), 16 / warps)
            << rows << " rows, " << warps << " warps, " << blocks << " block(s) per warp, ring "
            << depth;
      }
    }
  }
}

// The staged path: as many CTAs as an SM's 228 KB of shared memory holds (each CTA also reserves
// 1 KB), up to the register bound of 16 warps.
TEST(W4A8FragmentResidencyGpuTest, StagedCtasFillTheSharedMemory) {
  FF_SKIP_WITHOUT_GPU();
  for (int rows : {1, 16, 32}) {
    for (const auto& [warps, blocks, depth, stages] :
         {std::tuple{4, 2, 4, 4}, std::tuple{4, 1, 4, 4}, std::tuple{4, 1, 8, 3},
          std::tuple{8, 2, 4, 3}, std::tuple{4, 2, 4, 8}}) {
      const int kernel_blocks = rows > 16 ? 1 : blocks;
      const int bytes =
          internal::W4A8FragmentStagedSharedBytes(warps, kernel_blocks, depth, stages) +
          internal::W4A8FragmentActivationBytes(internal::W4A8FragmentSets(rows)) + 16;
      const int want = std::min(16 / warps, 233472 / (bytes + 1024));
      EXPECT_GE(internal::W4A8FragmentResidentCtas(rows, warps, blocks, depth, stages), want)
          << rows << " rows, " << warps << " warps, " << blocks << " block(s) per warp, ring "
          << depth << ", " << stages << " stages, " << bytes << " bytes";
    }
  }
}

}  // namespace
}  // namespace flatfleet::cuda
