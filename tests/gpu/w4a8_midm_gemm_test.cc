// The mid-M W4A8 GEMM (kernels/cuda/w4a8_midm_gemm.h) against the CPU reference quant::GemmW4A8
// followed by the epilogue addition, and against today's two-kernel GPU path (GemmW4A8 into
// float32, then AddBias with a float32 bias), through testing::CheckW4A8Case. Tolerance 0
// everywhere: the integer group sums are exact, every block folds all of K in the reference's
// order with fmaf (no split-K), and the epilogue is one float32 multiplication, one float32
// addition and one round-to-nearest-even to bf16, each spelled out on both sides, so every output
// must be identical bit for bit. Outputs are poisoned (0xFF bytes) first, and the gaps of a row
// stride must stay poisoned. Every tile runs on every problem it accepts, besides kAuto, the
// prefill kernel and (where the CPU reference covers every row) the simple kernel.
//
// The real layers are too big for the CPU reference on every row: there every row is compared
// with GemmW4A8 + AddBias (itself tested bit-exact against the reference in int8_gemm_test.cc),
// and a sample of rows (tile edges, the last rows and random ones) with the CPU reference.
#include "kernels/cuda/w4a8_midm_gemm.h"

#include <cstdint>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/w4a8_midm_gemm_launch.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/w4a8_gemm_test_util.h"

namespace flatfleet::cuda {
namespace {

using MidmCase = testing::W4A8Case;
using testing::W4A8CaseName;

const char* KernelName(W4A8MidmKernel kernel) {
  switch (kernel) {
    case W4A8MidmKernel::kAuto:
      return "auto";
    case W4A8MidmKernel::kMma64x32:
      return "mma 64x32";
    case W4A8MidmKernel::kMma64x64:
      return "mma 64x64";
    case W4A8MidmKernel::kMma64x128:
      return "mma 64x128";
    case W4A8MidmKernel::kMma128x128:
      return "mma 128x128";
    case W4A8MidmKernel::kPrefillMmaSync:
      return "prefill mma.sync";
    case W4A8MidmKernel::kPrefillAuto:
      return "prefill auto";
    case W4A8MidmKernel::kSimple:
      return "simple";
  }
  return "?";
}

constexpr W4A8MidmKernel kTiles[] = {W4A8MidmKernel::kMma64x32, W4A8MidmKernel::kMma64x64,
                                     W4A8MidmKernel::kMma64x128, W4A8MidmKernel::kMma128x128};

class W4A8MidmGemmGpuTest : public ::testing::TestWithParam<MidmCase> {};

TEST_P(W4A8MidmGemmGpuTest, EveryKernelMatchesReferenceAndTwoKernelPathBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const MidmCase& c = GetParam();
  std::vector<W4A8MidmKernel> kernels = {W4A8MidmKernel::kAuto, W4A8MidmKernel::kPrefillMmaSync,
                                         W4A8MidmKernel::kPrefillAuto};
  if (W4A8MidmSupports(c.group_size, c.zero_points)) {
    kernels.insert(kernels.end(), std::begin(kTiles), std::end(kTiles));
  }
  if (c.every_row_on_cpu) kernels.push_back(W4A8MidmKernel::kSimple);
  std::vector<testing::W4A8Run> runs;
  for (W4A8MidmKernel kernel : kernels) {
    runs.push_back(
        {.name = KernelName(kernel),
         .launch =
             [c, kernel](const testing::W4A8DeviceOperands& d, const testing::W4A8Output& out) {
               auto args = testing::W4A8GemmArgs<DeviceW4A8MidmGemm>(c, d, out);
               args.kernel = kernel;
               return GemmW4A8Midm(args, nullptr);
             },
         .check_after = nullptr});
  }
  testing::CheckW4A8Case(c, runs);
}

// Rows at every edge of 17..256 (17, 31, 63, 64, 65, 128, 200, 256; also 1 and 300: any m is
// computed), n not a multiple of 32 (odd n takes the scalar stores), k ending in a short 128-wide
// tile (160, 288, 416), groups of 32, 64, 128, 256 and per channel, with and without zero points.
// The per-channel groups of 4096 with zero points and of 8192 have sums that may reach 2^22: the
// tiles refuse them, kAuto runs the prefill kernel.
INSTANTIATE_TEST_SUITE_P(
    Tails, W4A8MidmGemmGpuTest,
    ::testing::Values(
        MidmCase{17, 131, 512, 128, false, true}, MidmCase{31, 77, 160, 32, true, true},
        MidmCase{63, 200, 288, 96, false, true}, MidmCase{64, 257, 640, 640, true, true},
        MidmCase{65, 130, 1024, 64, false, true}, MidmCase{128, 129, 416, 32, true, true},
        MidmCase{200, 1000, 512, 256, false, true}, MidmCase{256, 136, 2048, 128, true, true},
        MidmCase{1, 64, 128, 128, true, true}, MidmCase{300, 72, 256, 128, false, true},
        MidmCase{17, 33, 96, 32, false, true}, MidmCase{256, 31, 4096, 4096, false, true},
        MidmCase{64, 130, 4096, 4096, true, true}, MidmCase{100, 80, 8192, 8192, false, true},
        MidmCase{129, 4100, 512, 128, true, true}, MidmCase{192, 6144, 256, 128, false, true}),
    [](const auto& info) { return W4A8CaseName(info.param); });

// The real layers (group 128) at the engine's row counts: Llama-3-8B (= Mixtral-8x7B experts,
// whose gate|up and down are the same 28672 x 4096 and 4096 x 14336) fused q/k/v 6144 x 4096, o
// 4096 x 4096, fused gate|up, down; Llama-3-70B's fused q/k/v 10240 x 8192, fused gate|up
// 57344 x 8192 and down 8192 x 28672.
INSTANTIATE_TEST_SUITE_P(
    RealShapes, W4A8MidmGemmGpuTest,
    ::testing::Values(
        MidmCase{17, 4096, 4096, 128, false, false}, MidmCase{64, 4096, 4096, 128, true, false},
        MidmCase{256, 4096, 4096, 128, false, false}, MidmCase{64, 6144, 4096, 128, false, false},
        MidmCase{128, 6144, 4096, 128, true, false}, MidmCase{64, 28672, 4096, 128, true, false},
        MidmCase{256, 28672, 4096, 128, false, false}, MidmCase{64, 4096, 14336, 128, false, false},
        MidmCase{200, 4096, 14336, 128, true, false}, MidmCase{64, 10240, 8192, 128, true, false},
        MidmCase{256, 10240, 8192, 128, false, false}, MidmCase{65, 57344, 8192, 128, false, false},
        MidmCase{256, 57344, 8192, 128, true, false}, MidmCase{17, 8192, 28672, 128, true, false},
        MidmCase{64, 8192, 28672, 128, false, false}, MidmCase{256, 8192, 28672, 128, true, false}),
    [](const auto& info) { return W4A8CaseName(info.param); });

// The registers and shared memory of each tile allow the blocks per SM its __launch_bounds__ ask
// for (the bandwidth design counts on them).
TEST(W4A8MidmGemmOccupancyTest, TilesRunTheirBlocksPerSm) {
  FF_SKIP_WITHOUT_GPU();
  for (auto tile :
       {internal::W4A8MidmTileVariant::k64x32, internal::W4A8MidmTileVariant::k64x64,
        internal::W4A8MidmTileVariant::k64x128, internal::W4A8MidmTileVariant::k128x128}) {
    EXPECT_EQ(internal::W4A8MidmResidentBlocks(tile),
              internal::W4A8MidmExpectedResidentBlocks(tile))
        << static_cast<int>(tile);
  }
}

// kAuto's table in w4a8_midm_gemm.h (an H200: 132 SMs), and its fallback. Host only.
TEST(W4A8MidmGemmChoiceTest, MatchesTheDocumentedTable) {
  constexpr int kSms = 132;
  const W4A8MidmKernel k32 = W4A8MidmKernel::kMma64x32, k64 = W4A8MidmKernel::kMma64x64,
                       k128 = W4A8MidmKernel::kMma64x128, k2x = W4A8MidmKernel::kMma128x128,
                       pre = W4A8MidmKernel::kPrefillAuto;
  struct Run {
    int64_t first_m, last_m;
    W4A8MidmKernel kernel;
  };
  struct Row {
    int64_t n;
    std::vector<Run> runs;  // covering 17..256
  };
  const std::vector<Row> table = {
      {4096, {{17, 64, k32}, {65, 191, k64}, {192, 256, pre}}},
      {6144, {{17, 64, k32}, {65, 128, k64}, {129, 191, k128}, {192, 256, pre}}},
      {8192, {{17, 64, k64}, {65, 95, k128}, {96, 128, pre}, {129, 191, k2x}, {192, 256, pre}}},
      {10240, {{17, 64, k64}, {65, 95, k128}, {96, 128, pre}, {129, 191, k2x}, {192, 256, pre}}},
      {14336, {{17, 64, k64}, {65, 95, k128}, {96, 128, pre}, {129, 191, k2x}, {192, 256, pre}}},
      {28672, {{17, 64, k128}, {65, 95, k2x}, {96, 128, pre}, {129, 191, k2x}, {192, 256, pre}}},
      {57344, {{17, 64, k128}, {65, 95, k2x}, {96, 128, pre}, {129, 191, k2x}, {192, 256, pre}}}};
  auto widest_tile = [&](int64_t m, int64_t n) {
    for (W4A8MidmKernel kernel : {k2x, k128, k64}) {
      const auto tile = W4A8MidmTile(kernel);
      const int64_t blocks = ((m + tile.rows - 1) / tile.rows) * ((n + tile.cols - 1) / tile.cols);
      if ((kernel != k2x || m > 64) && blocks * 10 >= kSms * 9) return kernel;
    }
    return k32;
  };
  for (const Row& row : table) {
    int64_t next_m = 17;
    for (const Run& run : row.runs) {
      ASSERT_EQ(run.first_m, next_m) << "the table's runs must cover 17..256";
      next_m = run.last_m + 1;
      for (int64_t m = run.first_m; m <= run.last_m; ++m) {
        for (bool zero_points : {false, true}) {
          ASSERT_EQ(ChooseW4A8MidmKernel(m, row.n, 128, zero_points, kSms, true), run.kernel)
              << "m = " << m << ", n = " << row.n << (zero_points ? " with zero points" : "");
          // Without wgmma, where the table says prefill: the widest tile giving 9/10 of the SMs
          // a block (128 x 128 only above 64 rows), as the documented rule says.
          ASSERT_EQ(ChooseW4A8MidmKernel(m, row.n, 128, zero_points, kSms, false),
                    run.kernel == pre ? widest_tile(m, row.n) : run.kernel)
              << "m = " << m << ", n = " << row.n << " without wgmma";
        }
      }
    }
    ASSERT_EQ(next_m, 257);
  }
  // Group sums that may reach 2^22: the prefill kernel.
  for (bool wgmma : {false, true}) {
    EXPECT_EQ(ChooseW4A8MidmKernel(64, 4096, 4096, true, kSms, wgmma),
              W4A8MidmKernel::kPrefillMmaSync);
    EXPECT_EQ(ChooseW4A8MidmKernel(256, 8192, 8192, false, kSms, wgmma),
              W4A8MidmKernel::kPrefillMmaSync);
    EXPECT_EQ(ChooseW4A8MidmKernel(64, 4096, 4608, false, kSms, wgmma), W4A8MidmKernel::kMma64x32);
  }
  EXPECT_TRUE(W4A8MidmSupports(2176, true));
  EXPECT_FALSE(W4A8MidmSupports(2208, true));
  EXPECT_TRUE(W4A8MidmSupports(4704, false));
  EXPECT_FALSE(W4A8MidmSupports(4736, false));
  EXPECT_EQ(W4A8MidmTile(W4A8MidmKernel::kMma64x32).cols, 32);
  EXPECT_EQ(W4A8MidmTile(W4A8MidmKernel::kMma128x128).rows, 128);
  EXPECT_EQ(W4A8MidmTile(W4A8MidmKernel::kAuto).rows, 0);
}

// Argument checks run on the host before any launch: no GPU needed (fake device pointers).
using testing::FakeDevicePointer;

DeviceW4A8MidmGemm ShapeArgs() { return testing::FakeW4A8ShapeArgs<DeviceW4A8MidmGemm>(64); }

::testing::AssertionResult FailsMentioning(const DeviceW4A8MidmGemm& args, absl::StatusCode code,
                                           const std::string& text) {
  return testing::StatusMentions(GemmW4A8Midm(args, nullptr), code, text);
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(W4A8MidmGemmArgsTest, RejectsShapesItCannotRun) {
  testing::ExpectSharedW4A8ShapeChecks<DeviceW4A8MidmGemm>(
      [](const DeviceW4A8MidmGemm& args) { return GemmW4A8Midm(args, nullptr); }, 64,
      {int64_t{0}, int64_t{-1}, int64_t{1} << 31}, "m must be in 1..2^31-1");
  auto args = ShapeArgs();
  args.m = args.n = (int64_t{1} << 31) - 1;  // 2^51 tiles of 64 x 32: more than one launch
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "exceeds one launch"));
  // The tiles' limit: group sums below 2^22. kAuto and the prefill kernel take any group.
  for (W4A8MidmKernel kernel : kTiles) {
    for (auto [k, group_size, zero_points] :
         {std::tuple<int64_t, int64_t, bool>{4416, 2208, true},  // 2208 * 127 * 15 >= 2^22
          {9472, 4736, false}}) {                                // 4736 * 127 * 7 >= 2^22
      args = ShapeArgs();
      args.kernel = kernel;
      args.k = k;
      args.group_size = group_size;
      if (zero_points) args.w_zero_points = FakeDevicePointer<int8_t>();
      EXPECT_TRUE(FailsMentioning(args, kInvalid, "kMma* kernels need"))
          << KernelName(kernel) << " " << group_size;
      args.kernel = W4A8MidmKernel::kAuto;  // accepted: the call goes on to the pointers
      EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null")) << group_size;
      args.kernel = W4A8MidmKernel::kPrefillMmaSync;
      EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null")) << group_size;
    }
    args = ShapeArgs();  // the largest groups the tiles take
    args.kernel = kernel;
    args.k = 4352;
    args.group_size = 2176;
    args.w_zero_points = FakeDevicePointer<int8_t>();
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null")) << KernelName(kernel);
    args.k = 9408;
    args.group_size = 4704;
    args.w_zero_points = nullptr;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null")) << KernelName(kernel);
  }
}

TEST(W4A8MidmGemmArgsTest, RejectsNullAndMisalignedPointers) {
  testing::ExpectSharedW4A8PointerChecks<DeviceW4A8MidmGemm>(
      [](const DeviceW4A8MidmGemm& args) { return GemmW4A8Midm(args, nullptr); }, 64);
}

}  // namespace
}  // namespace flatfleet::cuda
