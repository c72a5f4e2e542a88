// The prefill W4A8 GEMM (kernels/cuda/w4a8_prefill_gemm.h) against the CPU reference
// quant::GemmW4A8 followed by the epilogue addition, and against today's two-kernel GPU path
// (GemmW4A8 into float32, then AddBias with a float32 bias). Tolerance 0 everywhere: the integer
// group sums are exact, the fold uses the reference's order and fmaf, and the epilogue is one
// float32 multiplication, one float32 addition and one round-to-nearest-even to bf16, each
// spelled out on both sides, so every output must be identical bit for bit. The simple kernel's
// int32 group sums must equal the reference's. Outputs are poisoned (0xFF bytes) first, and the
// gaps of a row stride must stay poisoned.
//
// The real layers are too big for the CPU reference on every row (4096 x 57344 x 8192 is 2e12
// multiply-adds): there every row is compared with GemmW4A8 + AddBias (itself tested bit-exact
// against the reference in int8_gemm_test.cc), and a sample of rows (tile edges, the last rows and
// random ones) with the CPU reference.
#include "kernels/cuda/w4a8_prefill_gemm.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/w4a8_gemm_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

using PrefillCase = testing::W4A8Case;
using testing::W4A8CaseName;

const char* KernelName(W4A8PrefillKernel kernel) {
  switch (kernel) {
    case W4A8PrefillKernel::kAuto:
      return "auto";
    case W4A8PrefillKernel::kMmaSync128x128:
      return "mma.sync 128x128";
    case W4A8PrefillKernel::kSimple:
      return "simple";
    case W4A8PrefillKernel::kWgmmaExperimental:
      return "wgmma";
    case W4A8PrefillKernel::kWgmma64x128TwoPerSm:
      return "wgmma 64x128 two per SM";
    case W4A8PrefillKernel::kWgmmaWarpSpecialized:
      return "wgmma warp-specialised";
  }
  return "?";
}

// Runs `kernels` on one random problem (testing::CheckW4A8Case: bit-exact against the CPU
// reference and GemmW4A8 + AddBias); the simple kernel's int32 group sums must equal the
// reference's.
void CheckCase(const PrefillCase& c, const std::vector<W4A8PrefillKernel>& kernels) {
  std::vector<testing::W4A8Run> runs;
  for (W4A8PrefillKernel kernel : kernels) {
    const bool simple = kernel == W4A8PrefillKernel::kSimple;
    const int64_t sums = simple ? c.m * c.n * (c.k / c.group_size) : 1;
    auto d_acc = std::make_shared<DeviceBuffer<int32_t>>(sums);
    runs.push_back({.name = KernelName(kernel),
                    .launch =
                        [c, kernel, simple, sums, d_acc](const testing::W4A8DeviceOperands& d,
                                                         const testing::W4A8Output& out) {
                          auto args = testing::W4A8GemmArgs<DeviceW4A8PrefillGemm>(c, d, out);
                          args.kernel = kernel;
                          if (simple) {
                            if (cudaMemset(d_acc->get(), 0xff, sums * 4) != cudaSuccess) {
                              return absl::InternalError("cudaMemset");
                            }
                            args.group_accumulators = d_acc->get();
                          }
                          return GemmW4A8Prefill(args, nullptr);
                        },
                    .check_after = simple
                                       ? std::function<void(const quant::QuantizedGemmResult&)>(
                                             [d_acc](const quant::QuantizedGemmResult& expected) {
                                               EXPECT_TRUE(testing::BitwiseEqual(
                                                   expected.group_accumulators, d_acc->ToHost()))
                                                   << "int32 group sums";
                                             })
                                       : nullptr});
  }
  testing::CheckW4A8Case(c, runs);
}

class W4A8PrefillGemmGpuTest : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(W4A8PrefillGemmGpuTest, MatchesReferenceAndTwoKernelPathBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  std::vector<W4A8PrefillKernel> kernels = {W4A8PrefillKernel::kAuto,
                                            W4A8PrefillKernel::kMmaSync128x128};
  if (GetParam().every_row_on_cpu) kernels.push_back(W4A8PrefillKernel::kSimple);
  CheckCase(GetParam(), kernels);
}

// The wgmma kernels (kWgmmaExperimental is kAuto's choice on Hopper where it applies, so the
// suite above also runs it through kAuto), each on its own test so a filter can pick one: the
// same checks, on the problems they accept (k and groups multiples of 128). Hopper only.
class W4A8PrefillWgmmaGpuTest : public ::testing::TestWithParam<PrefillCase> {
 protected:
  void Check(W4A8PrefillKernel kernel) {
    FF_SKIP_WITHOUT_GPU();
    int device = 0, major = 0;
    FF_CUDA_ASSERT(cudaGetDevice(&device));
    FF_CUDA_ASSERT(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major != 9) GTEST_SKIP() << "wgmma needs a Hopper GPU (sm_90a)";
    CheckCase(GetParam(), {kernel});
  }
};

TEST_P(W4A8PrefillWgmmaGpuTest, MatchesReferenceAndTwoKernelPathBitExactly) {
  Check(W4A8PrefillKernel::kWgmmaExperimental);
}

TEST_P(W4A8PrefillWgmmaGpuTest, TwoPerSmMatchesReferenceBitExactly) {
  Check(W4A8PrefillKernel::kWgmma64x128TwoPerSm);
}

TEST_P(W4A8PrefillWgmmaGpuTest, WarpSpecializedMatchesReferenceBitExactly) {
  Check(W4A8PrefillKernel::kWgmmaWarpSpecialized);
}

// Tails in every dimension: m around the 128-row tile and the 8-tile rasterisation groups (64,
// 65, 127, 300, 4096 + 17 = 33 tile rows: five groups, the last of one row; and below the
// engine's 64 rows: 1, 17, 33); n not a multiple of 128 (nor of 8 or 2: odd n takes the scalar
// stores); k shorter than one 128-wide K tile (32, 96) or ending in a short one (160, 288, 416);
// groups of 32, 64, 96, 128, 256, 384, 640 and per channel, with and without zero points. Group
// sums that may reach 2^22 (per channel over 4096 with zero points, 8192 without) take the
// conversion-unit path, the others the exact magic-number conversion; 2176 with zero points is
// the largest group of the latter (2176 * 127 * 15 < 2^22).
INSTANTIATE_TEST_SUITE_P(
    Tails, W4A8PrefillGemmGpuTest,
    ::testing::Values(
        PrefillCase{64, 128, 256, 128, false, true}, PrefillCase{65, 130, 512, 128, true, true},
        PrefillCase{127, 77, 160, 32, false, true}, PrefillCase{128, 256, 1024, 64, true, true},
        PrefillCase{300, 200, 288, 96, true, true}, PrefillCase{4113, 72, 256, 128, false, true},
        PrefillCase{4113, 131, 128, 32, true, true}, PrefillCase{1, 64, 128, 128, true, true},
        PrefillCase{17, 136, 384, 384, false, true}, PrefillCase{33, 257, 640, 640, true, true},
        PrefillCase{96, 130, 2048, 128, false, true}, PrefillCase{200, 384, 4096, 4096, true, true},
        PrefillCase{257, 131, 96, 32, true, true}, PrefillCase{129, 256, 1280, 640, false, true},
        PrefillCase{512, 520, 2048, 256, true, true}, PrefillCase{70, 1000, 416, 32, false, true},
        PrefillCase{1030, 1030, 32, 32, false, true}, PrefillCase{96, 130, 8192, 8192, false, true},
        PrefillCase{100, 80, 4352, 2176, true, true}),
    [](const auto& info) { return W4A8CaseName(info.param); });

// The real layers (group 128) at m = 256 and 4096: Llama-3-8B (= Mixtral-8x7B experts, whose
// gate|up and down are the same 28672 x 4096 and 4096 x 14336) fused q/k/v, o, fused gate|up,
// down; Llama-3-70B's.
INSTANTIATE_TEST_SUITE_P(RealShapes, W4A8PrefillGemmGpuTest,
                         ::testing::Values(PrefillCase{256, 6144, 4096, 128, false, false},
                                           PrefillCase{4096, 6144, 4096, 128, true, false},
                                           PrefillCase{256, 4096, 4096, 128, true, false},
                                           PrefillCase{4096, 4096, 4096, 128, false, false},
                                           PrefillCase{256, 28672, 4096, 128, false, false},
                                           PrefillCase{4096, 28672, 4096, 128, true, false},
                                           PrefillCase{256, 4096, 14336, 128, true, false},
                                           PrefillCase{4096, 4096, 14336, 128, false, false},
                                           PrefillCase{256, 10240, 8192, 128, true, false},
                                           PrefillCase{4096, 10240, 8192, 128, false, false},
                                           PrefillCase{256, 8192, 8192, 128, false, false},
                                           PrefillCase{4096, 8192, 8192, 128, true, false},
                                           PrefillCase{256, 57344, 8192, 128, true, false},
                                           PrefillCase{4096, 57344, 8192, 128, false, false},
                                           PrefillCase{256, 8192, 28672, 128, false, false},
                                           PrefillCase{4096, 8192, 28672, 128, true, false}),
                         [](const auto& info) { return W4A8CaseName(info.param); });

// Tails in m and n (k and groups stay multiples of 128), groups of 128, 256 and 640, zero points,
// and the real layers at m = 256 and 4096.
INSTANTIATE_TEST_SUITE_P(Tails, W4A8PrefillWgmmaGpuTest,
                         ::testing::Values(PrefillCase{64, 128, 256, 128, false, true},
                                           PrefillCase{65, 130, 512, 128, true, true},
                                           PrefillCase{1, 64, 128, 128, true, true},
                                           PrefillCase{17, 136, 384, 128, false, true},
                                           PrefillCase{96, 130, 2048, 128, false, true},
                                           PrefillCase{4113, 72, 256, 128, false, true},
                                           PrefillCase{129, 256, 1280, 640, false, true},
                                           PrefillCase{300, 200, 1024, 256, true, true},
                                           PrefillCase{512, 520, 2048, 256, true, true},
                                           PrefillCase{70, 1000, 512, 128, false, true}),
                         [](const auto& info) { return W4A8CaseName(info.param); });

INSTANTIATE_TEST_SUITE_P(RealShapes, W4A8PrefillWgmmaGpuTest,
                         ::testing::Values(PrefillCase{256, 6144, 4096, 128, false, false},
                                           PrefillCase{4096, 6144, 4096, 128, true, false},
                                           PrefillCase{4096, 4096, 4096, 128, false, false},
                                           PrefillCase{4096, 28672, 4096, 128, true, false},
                                           PrefillCase{4096, 4096, 14336, 128, false, false},
                                           PrefillCase{4096, 10240, 8192, 128, false, false},
                                           PrefillCase{4096, 8192, 8192, 128, true, false},
                                           PrefillCase{4096, 57344, 8192, 128, false, false},
                                           PrefillCase{4096, 8192, 28672, 128, true, false}),
                         [](const auto& info) { return W4A8CaseName(info.param); });

// Argument checks run on the host before any launch: no GPU needed (fake device pointers).
using testing::FakeDevicePointer;

DeviceW4A8PrefillGemm ValidArgs() { return testing::FakeW4A8Args<DeviceW4A8PrefillGemm>(300); }
DeviceW4A8PrefillGemm ShapeArgs() { return testing::FakeW4A8ShapeArgs<DeviceW4A8PrefillGemm>(300); }

::testing::AssertionResult FailsMentioning(const DeviceW4A8PrefillGemm& args, absl::StatusCode code,
                                           const std::string& text) {
  return testing::StatusMentions(GemmW4A8Prefill(args, nullptr), code, text);
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(W4A8PrefillGemmArgsTest, RejectsShapesItCannotRun) {
  testing::ExpectSharedW4A8ShapeChecks<DeviceW4A8PrefillGemm>(
      [](const DeviceW4A8PrefillGemm& args) { return GemmW4A8Prefill(args, nullptr); }, 300,
      {int64_t{0}, int64_t{-1}, int64_t{1} << 31}, "m must be in 1..2^31-1");
  auto args = ShapeArgs();
  args.m = args.n = (int64_t{1} << 31) - 1;  // 2^48 tiles: more blocks than one launch takes
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "exceeds one launch"));
  args = ValidArgs();
  args.group_accumulators = FakeDevicePointer<int32_t>();
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "simple kernel only"));
  // The wgmma kernels' limits: whole 128-wide K tiles in one group, group sums below 2^22.
  for (W4A8PrefillKernel kernel :
       {W4A8PrefillKernel::kWgmmaExperimental, W4A8PrefillKernel::kWgmma64x128TwoPerSm,
        W4A8PrefillKernel::kWgmmaWarpSpecialized}) {
    for (auto [k, group_size, zero_points] :
         {std::tuple<int64_t, int64_t, bool>{544, 32, false},  // k and groups not multiples of 128
          {512, 64, false},                                    // groups not a multiple of 128
          {4608, 2304, true},      // 2304 * 127 * 15 >= 2^22 (fine without zero points)
          {9472, 4736, false}}) {  // 4736 * 127 * 7 >= 2^22
      args = ShapeArgs();
      args.kernel = kernel;
      args.k = k;
      args.group_size = group_size;
      if (zero_points) args.w_zero_points = FakeDevicePointer<int8_t>();
      EXPECT_TRUE(FailsMentioning(args, kInvalid, "wgmma kernel needs"))
          << KernelName(kernel) << " " << k << " " << group_size;
    }
    args = ShapeArgs();  // accepted: the call goes on to the pointers
    args.kernel = kernel;
    args.k = 4608;
    args.group_size = 2304;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null")) << KernelName(kernel);
  }
}

TEST(W4A8PrefillGemmArgsTest, RejectsNullAndMisalignedPointers) {
  testing::ExpectSharedW4A8PointerChecks<DeviceW4A8PrefillGemm>(
      [](const DeviceW4A8PrefillGemm& args) { return GemmW4A8Prefill(args, nullptr); }, 300);
}

}  // namespace
}  // namespace flatfleet::cuda
