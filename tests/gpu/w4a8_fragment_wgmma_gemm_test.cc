// The W4A8 fragment wgmma GEMM (kernels/cuda/w4a8_fragment_wgmma_gemm.h): bit for bit the CPU
// reference quant::GemmW4A8 followed by the epilogue addition, and today's two-kernel GPU path, in
// every output configuration (CheckW4A8Case: outputs poisoned first, stride gaps stay poisoned),
// with both token tiles (64 and 128) cut in 2 and 4 parts (neither changes a result), on m, n and
// K tails, groups
// of 128..2048 and per channel, zero points and symmetric, and the real layers; and the host-side
// argument checks.
#include "kernels/cuda/w4a8_fragment_wgmma_gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_gemm.h"
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

// The operand fields of a case's GEMM over its fragment layout `f`.
DeviceW4A8FragmentWgmmaGemm CaseArgs(const testing::W4A8Case& c,
                                     const testing::W4A8DeviceOperands& d,
                                     const testing::DeviceFragments& f) {
  DeviceW4A8FragmentWgmmaGemm args;
  args.m = c.m;
  args.n = c.n;
  args.k = c.k;
  args.group_size = c.group_size;
  args.x_codes = d.x.get();
  args.x_scales = d.x_scales.get();
  args.w_fragments = f.words.get();
  args.w_fragment_scales = f.scales.get();
  args.w_unsigned_nibbles = d.unsigned_nibbles;
  args.w_has_zero_points = c.zero_points;
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

TEST(W4A8FragmentWgmmaArgsTest, SplitsOnlyWhereTheTilesLeaveSmsIdle) {
  constexpr int kSms = 132;
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(64, 4096, 14336, 128, kSms), 5);   // 32 tiles
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(128, 4096, 14336, 128, kSms), 5);  // 32 tiles
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(64, 8192, 28672, 128, kSms), 3);   // 64 tiles
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(129, 4096, 14336, 128, kSms), 1);  // measured slower
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(64, 4096, 4096, 128, kSms), 1);    // short K: slower
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(64, 8192, 8192, 128, kSms), 1);    // short K: slower
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(64, 28672, 14336, 128, kSms), 1);  // 224 tiles
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(64, 128, 16384, 128, kSms), 16);   // at most 16
  EXPECT_EQ(ChooseW4A8FragmentWgmmaSplit(64, 4096, 14336, 128, 0), 1);      // no device: none
  for (int64_t groups = 96; groups <= 160; ++groups) {
    for (int64_t n : {128, 1024, 4096}) {
      const int split = ChooseW4A8FragmentWgmmaSplit(33, n, 128 * groups, 128, kSms);
      EXPECT_GE(split, 1);
      const int64_t per_split = (groups + split - 1) / split;
      EXPECT_LT((split - 1) * per_split, groups) << groups << " groups, split " << split;
    }
  }
  using testing::StatusMentions;
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  auto args = FakeArgs();  // 4 groups
  args.y = testing::FakeDevicePointer<float>();
  args.split = 5;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "split must be"));
  args.k = 1280;  // 10 groups: 4 splits of 3 leave none empty, 6 of 2 leave none, 9 of 2 do
  args.split = 9;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "without groups"));
  args.split = 4;
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "split_partials"));
  args.split_partials = testing::FakeDevicePointer<float>();
  EXPECT_TRUE(StatusMentions(GemmW4A8FragmentWgmma(args, nullptr), kInvalid, "split_counters"));
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
           testing::DeviceFragments f(c.n, c.k, c.group_size);
           if (absl::Status packed = testing::RepackW4A8Fragments(c, d, f); !packed.ok()) {
             return packed;
           }
           DeviceW4A8FragmentWgmmaGemm args = CaseArgs(c, d, f);
           args.epilogue_add = out.with_add ? d.add.get() : nullptr;
           args.y = out.y;
           args.y_stride = out.y_stride;
           args.y_type = out.y_type;
           args.tokens_per_tile = tokens;
           args.token_parts = parts;
           args.split = 1;  // the unsplit kernel is the bit-exact one (splits: the tests below)
           absl::Status status = GemmW4A8FragmentWgmma(args, nullptr);
           if (status.ok() && cudaDeviceSynchronize() != cudaSuccess) {
             status = absl::InternalError("kernel failed");
           }
           return status;  // the layout is freed after the kernel is done
         },
         .check_after = nullptr});
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

// ---- Split K on the device ----

struct WgmmaSplitCase {
  testing::W4A8Case shape;
  int split;   // 0: the rule with 132 SMs
  int tokens;  // 0: the rule
  int parts;
};

// The case's three outputs (testing::W4A8SplitOutputs) with `config`'s split, tile and parts and
// fresh zero counters (checked zero after each call).
void RunWgmmaSplit(const testing::W4A8Case& c, const testing::W4A8DeviceOperands& d,
                   const testing::DeviceFragments& f, const WgmmaSplitCase& config,
                   testing::W4A8SplitOutputs& run) {
  DeviceBuffer<float> partials(
      std::max<int64_t>(1, W4A8FragmentWgmmaPartialFloats(c.m, c.n, kW4A8FragmentWgmmaMaxSplit)));
  const std::vector<int32_t> zeros(W4A8FragmentWgmmaCounterCount(c.m, c.n), 0);
  DeviceBuffer<int32_t> counters(zeros);
  DeviceBuffer<float> y(c.m * c.n);
  DeviceBuffer<uint16_t> y_bf16(c.m * c.n);
  ASSERT_NE(y_bf16.get(), nullptr) << "out of device memory";
  DeviceW4A8FragmentWgmmaGemm args = CaseArgs(c, d, f);
  args.tokens_per_tile = config.tokens;
  args.token_parts = config.parts;
  args.split = config.split;
  args.sm_count = 132;
  args.split_partials = partials.get();
  args.split_counters = counters.get();
  for (int pass = 0; pass < 3; ++pass) {
    args.epilogue_add = pass == 0 ? nullptr : d.add.get();
    args.y = pass == 2 ? static_cast<void*>(y_bf16.get()) : y.get();
    args.y_type = pass == 2 ? GemmElementType::kBf16 : GemmElementType::kFloat32;
    FF_CUDA_ASSERT(cudaMemset(args.y, 0xff, c.m * c.n * (pass == 2 ? 2 : 4)));
    const absl::Status status = GemmW4A8FragmentWgmma(args, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    ASSERT_EQ(counters.ToHost(), zeros) << "the counters must be left zero";
    if (pass == 0) run.plain = y.ToHost();
    if (pass == 1) run.with_add = y.ToHost();
    if (pass == 2) run.bf16 = y_bf16.ToHost();
  }
}

class W4A8FragmentWgmmaSplitGpuTest : public ::testing::TestWithParam<WgmmaSplitCase> {};

// Within the header's bound of the reference, |y - y_ref| <= (groups + split) 2^-23 |s_x|
// sum_g |S_g s_w|; the epilogue exactly as specified on the kernel's own float32 result; the same
// bits on a second run and for row 0 alone with the same split; the counters left zero.
TEST_P(W4A8FragmentWgmmaSplitGpuTest, StaysWithinTheBoundAndIsDeterministic) {
  FF_SKIP_WITHOUT_GPU();
  if (!CurrentDeviceIsHopper()) GTEST_SKIP() << "wgmma needs a Hopper GPU (sm_90a)";
  const WgmmaSplitCase config = GetParam();
  const testing::W4A8Case c = config.shape;
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const auto x = testing::RandomInt8PerRow(c.m, c.k, rng);
  const auto w = testing::RandomInt4Weights(c.n, c.k, c.group_size, c.zero_points, rng);
  std::vector<float> add(c.n);
  for (float& v : add) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  const auto expected = quant::GemmW4A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const testing::W4A8DeviceOperands d = testing::UploadW4A8Operands(x, w, *packed, add);
  testing::DeviceFragments f(c.n, c.k, c.group_size);
  ASSERT_TRUE(testing::RepackW4A8Fragments(c, d, f).ok());
  const int split = config.split != 0
                        ? config.split
                        : ChooseW4A8FragmentWgmmaSplit(c.m, c.n, c.k, c.group_size, 132);
  ASSERT_GT(split, 1) << "a split case that does not split";
  SCOPED_TRACE(absl::StrCat("split ", split, ", tile ", config.tokens, ", parts ", config.parts));

  testing::W4A8SplitOutputs first, second;
  RunWgmmaSplit(c, d, f, config, first);
  RunWgmmaSplit(c, d, f, config, second);
  if (HasFatalFailure()) return;
  testing::ExpectW4A8SplitWithinBound(x, w, *expected, add, split, first);
  if (HasFatalFailure()) return;
  EXPECT_EQ(std::memcmp(first.plain.data(), second.plain.data(), first.plain.size() * 4), 0)
      << "a second run gave other bits";
  EXPECT_EQ(first.bf16, second.bf16);

  // Row 0 alone with the same split: the batch's bits (a row's partials and their sum do not
  // depend on the other rows).
  WgmmaSplitCase alone = config;
  alone.shape.m = 1;
  alone.split = split;
  testing::W4A8SplitOutputs single;
  RunWgmmaSplit(alone.shape, d, f, alone, single);
  if (HasFatalFailure()) return;
  EXPECT_EQ(std::memcmp(single.plain.data(), first.plain.data(), c.n * 4), 0)
      << "row 0 alone differs from row 0 in the batch";
}

// The rule on narrow layers with long K (Llama-3-8B's down_proj at 64 and 128 rows: 5 uneven
// splits), forced splits with uneven group counts, zero points, n tails, both tiles and part
// counts, two token tiles of rows (130), and 16 splits.
INSTANTIATE_TEST_SUITE_P(
    Splits, W4A8FragmentWgmmaSplitGpuTest,
    ::testing::Values(WgmmaSplitCase{{64, 4096, 14336, 128, false, true}, 0, 0, 0},
                      WgmmaSplitCase{{128, 4096, 14336, 128, true, true}, 0, 0, 0},
                      WgmmaSplitCase{{100, 200, 2048, 256, true, true}, 3, 0, 0},
                      WgmmaSplitCase{{130, 300, 1536, 384, false, true}, 4, 128, 4},
                      WgmmaSplitCase{{33, 1000, 4096, 128, true, true}, 16, 64, 4},
                      WgmmaSplitCase{{64, 77, 1280, 128, true, true}, 2, 128, 2}),
    [](const auto& info) {
      return absl::StrCat(testing::W4A8CaseName(info.param.shape), "_split", info.param.split, "_t",
                          info.param.tokens, "_p", info.param.parts);
    });

}  // namespace
}  // namespace flatfleet::cuda
