// The W4A8 fragment wgmma GEMM (kernels/cuda/w4a8_fragment_wgmma_gemm.h): bit for bit the CPU
// reference quant::GemmW4A8 followed by the epilogue addition, and today's two-kernel GPU path, in
// every output configuration (CheckW4A8Case: outputs poisoned first, stride gaps stay poisoned),
// with both token tiles (64 and 128) cut in 2 and 4 parts (neither changes a result), on m, n and
// K tails, groups
// of 128..2048 and per channel, zero points and symmetric, and the real layers; and the host-side
// argument checks.
#include "kernels/cuda/w4a8_fragment_wgmma_gemm.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/w4a8_fragment_layout.h"
#include "kernels/cuda/w4a8_gemm_checks.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/w4a8_gemm_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

DeviceW4A8FragmentWgmmaGemm FakeArgs() {
  DeviceW4A8FragmentWgmmaGemm args;
  args.m = 100;
  args.n = 64;
  args.k = 512;
  args.group_size = 128;
  args.x_codes = testing::FakeDevicePointer<int8_t>();
  args.x_scales = testing::FakeDevicePointer<uint16_t>();
  args.w_fragments = testing::FakeDevicePointer<uint32_t>();
  args.w_fragment_scales = testing::FakeDevicePointer<uint32_t>();
  args.y = nullptr;  // every call below must stop before launching
  return args;
}

TEST(W4A8FragmentWgmmaArgsTest, RejectsWhatItCannotRun) {
  using testing::StatusMentions;
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  auto args = FakeArgs();
  args.k = 576;  // a multiple of 64 (the layout) but not of the kernel's 128
  args.group_size = 64;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "k must be"));
  args = FakeArgs();
  args.group_size = 64;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "multiple of 128"));
  args = FakeArgs();
  args.k = 4608;
  args.group_size = 2304;  // 2304 * 127 * 15 >= 2^22 with zero points
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "2^22"));
  args.w_has_zero_points = false;  // 2304 * 127 * 7 < 2^22: only the null y stops it
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "y is null"));
  args = FakeArgs();
  args.tokens_per_tile = 96;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "tokens_per_tile"));
  args = FakeArgs();
  args.token_parts = 3;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "token_parts"));
  args = FakeArgs();
  args.m = 0;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "m must be"));
  args = FakeArgs();
  args.x_scales = nullptr;
  args.y = testing::FakeDevicePointer<float>();
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "x_scales is null"));
  args = FakeArgs();
  args.y = testing::FakeDevicePointer<float>();
  args.w_fragment_scales = testing::FakeDevicePointer<uint32_t>(4);
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "8-byte aligned"));
  args = FakeArgs();
  args.y = testing::FakeDevicePointer<float>(2);
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "aligned"));
  if (!CurrentDeviceIsHopper()) {  // valid arguments stop at the device check, before any launch
    args = FakeArgs();
    args.y = testing::FakeDevicePointer<float>();
    EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr),
                               absl::StatusCode::kFailedPrecondition, "Hopper"));
  }
}

TEST(W4A8FragmentWgmmaArgsTest, WinsWhereMeasuredFaster) {
  EXPECT_TRUE(W4A8FragmentWgmmaWins(64, 8192, 8192));
  EXPECT_TRUE(W4A8FragmentWgmmaWins(64, 14336, 4096));
  EXPECT_FALSE(W4A8FragmentWgmmaWins(64, 28672, 4096));
  EXPECT_FALSE(W4A8FragmentWgmmaWins(33, 57344, 8192));
  EXPECT_TRUE(W4A8FragmentWgmmaWins(65, 57344, 8192));
  EXPECT_TRUE(W4A8FragmentWgmmaWins(4096, 28672, 4096));
}

TEST(W4A8FragmentWgmmaArgsTest, AppliesWhereItsPreconditionsHold) {
  EXPECT_TRUE(W4A8FragmentWgmmaApplies(8192, 128, true));
  EXPECT_TRUE(W4A8FragmentWgmmaApplies(28672, 128, false));
  EXPECT_TRUE(W4A8FragmentWgmmaApplies(4096, 2048, true));    // 2048 * 127 * 15 < 2^22
  EXPECT_FALSE(W4A8FragmentWgmmaApplies(4608, 2304, true));   // >= 2^22
  EXPECT_TRUE(W4A8FragmentWgmmaApplies(4608, 4608, false));   // per channel, symmetric
  EXPECT_FALSE(W4A8FragmentWgmmaApplies(8192, 8192, false));  // per channel, too wide
  EXPECT_FALSE(W4A8FragmentWgmmaApplies(8192, 64, true));
  EXPECT_FALSE(W4A8FragmentWgmmaApplies(4160, 4160, false));  // k not a multiple of 128
  EXPECT_FALSE(W4A8FragmentWgmmaApplies(1024, 384, false));   // group does not divide k
}

// ---- On the device ----

class W4A8FragmentWgmmaGpuTest : public ::testing::TestWithParam<testing::W4A8Case> {};

TEST_P(W4A8FragmentWgmmaGpuTest, MatchesTheReferenceBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  if (!CurrentDeviceIsHopper()) GTEST_SKIP() << "wgmma needs a Hopper GPU (sm_90a)";
  const testing::W4A8Case c = GetParam();
  std::vector<testing::W4A8Run> runs;
  for (const auto& [tokens, parts] :
       {std::pair{64, 2}, std::pair{64, 4}, std::pair{128, 2}, std::pair{128, 4}}) {
    runs.push_back(
        {.name = absl::StrCat(tokens, " tokens a tile in ", parts, " parts"),
         .launch = [c, tokens, parts](const testing::W4A8DeviceOperands& d,
                                      const testing::W4A8Output& out) -> absl::Status {
           DeviceBuffer<uint32_t> words(W4A8FragmentWordCount(c.n, c.k));
           DeviceBuffer<uint32_t> scales(W4A8FragmentScaleWordCount(c.n, c.k, c.group_size));
           if (words.get() == nullptr || scales.get() == nullptr) {
             return absl::ResourceExhaustedError("out of device memory");
           }
           if (absl::Status packed =
                   PackW4A8Fragments({.n = c.n,
                                      .k = c.k,
                                      .group_size = c.group_size,
                                      .words = d.w.get(),
                                      .scales = d.w_scales.get(),
                                      .zero_points = c.zero_points ? d.zeros.get() : nullptr},
                                     words.get(), scales.get(), nullptr);
               !packed.ok()) {
             return packed;
           }
           DeviceW4A8FragmentWgmmaGemm args;
           args.m = c.m;
           args.n = c.n;
           args.k = c.k;
           args.group_size = c.group_size;
           args.x_codes = d.x.get();
           args.x_scales = d.x_scales.get();
           args.w_fragments = words.get();
           args.w_fragment_scales = scales.get();
           args.w_unsigned_nibbles = d.unsigned_nibbles;
           args.w_has_zero_points = c.zero_points;
           args.epilogue_add = out.with_add ? d.add.get() : nullptr;
           args.y = out.y;
           args.y_stride = out.y_stride;
           args.y_type = out.y_type;
           args.tokens_per_tile = tokens;
           args.token_parts = parts;
           absl::Status status = GemmW4A8FragmentWgmma(args, nullptr);
           if (status.ok() && cudaDeviceSynchronize() != cudaSuccess) {
             status = absl::InternalError("kernel failed");
           }
           return status;  // the layout is freed after the kernel is done
         }});
  }
  testing::CheckW4A8Case(c, runs);
}

// Rows from 1 to several tiles with tails (1, 63, 64, 65, 130, 257), n tails of a 16-channel block
// and of a 128-channel tile, K of 2..36 tiles, groups of 128, 256, 384, 2048 and per channel
// (symmetric), zero points and symmetric; then the real layers on sampled rows (Llama-3-70B's o,
// qkv, gate+up and down, Llama-3-8B's down) at prefill sizes.
INSTANTIATE_TEST_SUITE_P(Shapes, W4A8FragmentWgmmaGpuTest,
                         ::testing::Values(testing::W4A8Case{1, 64, 256, 128, false, true},
                                           testing::W4A8Case{63, 77, 1024, 128, true, true},
                                           testing::W4A8Case{64, 130, 1536, 384, false, true},
                                           testing::W4A8Case{65, 200, 2048, 256, true, true},
                                           testing::W4A8Case{130, 129, 1280, 128, false, true},
                                           testing::W4A8Case{257, 300, 4096, 2048, true, true},
                                           testing::W4A8Case{100, 96, 4608, 4608, false, true},
                                           testing::W4A8Case{200, 16, 640, 128, true, true},
                                           testing::W4A8Case{4096, 8192, 8192, 128, false, false},
                                           testing::W4A8Case{333, 10240, 8192, 128, true, false},
                                           testing::W4A8Case{1024, 57344, 8192, 128, false, false},
                                           testing::W4A8Case{512, 8192, 28672, 128, false, false},
                                           testing::W4A8Case{2000, 4096, 14336, 128, true, false}),
                         [](const auto& info) { return testing::W4A8CaseName(info.param); });

}  // namespace
}  // namespace flatfleet::cuda
