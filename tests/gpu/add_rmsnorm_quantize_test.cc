// The fused residual add + RMSNorm + per-token INT8 quantisation (kernels/cuda/
// add_rmsnorm_quantize.h) against
//  * the unfused GPU sequence it replaces, FusedAddRmsNorm (bf16 out) then
//    QuantizeActivationsInt8 of that bf16: residual, bf16 y, codes (with the zero tail of a row
//    stride) and scales bit-exact (tolerance 0: the same operations in the same order, the same
//    thread count and block tree for the sum of squares);
//  * the CPU reference kernels::cpu::AddRmsNormQuantizeInt8 (kernels/cpu/add_rmsnorm_quantize.h):
//    residual exact (one float32 addition); y within 1 bf16 ulp (the sums of squares are ordered
//    differently, a few float ulps apart, and a value next to a bf16 rounding boundary may round
//    to the other neighbour: the tie cases); codes and scales bit-exact to the CPU quantizer's
//    codes of the GPU's y, and to the full reference on every row whose y equals the
//    reference's (every row but the tie cases, whose count is recorded).
// Outputs are poisoned (0xFF bytes) first.
#include "kernels/cuda/add_rmsnorm_quantize.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "kernels/cpu/add_rmsnorm_quantize.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "kernels/cuda/fused_add_rmsnorm.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;

constexpr float kEps = 1e-5f;

struct FusedCase {
  int64_t rows, hidden;
  bool delta;
  float clip_ratio;
  int64_t codes_pad;  // codes_stride = hidden + codes_pad
};

std::string CaseName(const FusedCase& c) {
  return absl::StrCat("r", c.rows, "_h", c.hidden, c.delta ? "_delta" : "_nodelta", "_clip",
                      static_cast<int>(c.clip_ratio * 100), "_pad", c.codes_pad);
}

// What one run leaves on the device.
struct Outputs {
  std::vector<float> residual;
  std::vector<uint16_t> y;  // bf16 bits
  std::vector<int8_t> codes;
  std::vector<uint16_t> scales;
  int32_t status = 0;
};

class AddRmsNormQuantizeGpuTest : public ::testing::TestWithParam<FusedCase> {
 protected:
  testing::SeededRng random_;
};

TEST_P(AddRmsNormQuantizeGpuTest, MatchesUnfusedPathAndCpuReference) {
  FF_SKIP_WITHOUT_GPU();
  const FusedCase c = GetParam();
  const int64_t rows = c.rows, hidden = c.hidden, stride = c.hidden + c.codes_pad;
  std::vector<float> residual = random_.Gaussian(rows * hidden, 2.0f);
  // Row 0 all zero without a delta (y = 0: scale 1, codes 0); one row with a large outlier.
  if (!c.delta) std::fill(residual.begin(), residual.begin() + hidden, 0.0f);
  if (rows > 1) residual[hidden + hidden / 3] *= 40.0f;
  const std::vector<uint16_t> delta = testing::ToBf16(random_.Gaussian(rows * hidden, 0.5f));
  std::vector<float> weight(hidden);
  for (float& w : weight) w = random_.UniformFloat(0.5f, 1.5f);

  DeviceBuffer<float> d_weight(weight);
  DeviceBuffer<uint16_t> d_delta(delta);
  const auto* delta_bf16 =
      c.delta ? reinterpret_cast<const __nv_bfloat16*>(d_delta.get()) : nullptr;
  auto run = [&](bool fused) -> Outputs {
    DeviceBuffer<float> d_residual(residual);
    DeviceBuffer<uint16_t> d_y(testing::Poisoned<uint16_t>(rows * hidden));
    DeviceBuffer<int8_t> d_codes(testing::Poisoned<int8_t>(rows * stride));
    DeviceBuffer<uint16_t> d_scales(testing::Poisoned<uint16_t>(rows));
    DeviceBuffer<int32_t> d_status(std::vector<int32_t>{0});
    auto* y = reinterpret_cast<__nv_bfloat16*>(d_y.get());
    absl::Status status;
    if (fused) {
      status = AddRmsNormQuantizeInt8({.residual = d_residual.get(),
                                       .rows = rows,
                                       .hidden = hidden,
                                       .delta = delta_bf16,
                                       .weight = d_weight.get(),
                                       .eps = kEps,
                                       .clip_ratio = c.clip_ratio,
                                       .codes = d_codes.get(),
                                       .codes_stride = stride,
                                       .scales = d_scales.get(),
                                       .out = y,
                                       .status = d_status.get()},
                                      nullptr);
    } else {
      status = FusedAddRmsNorm({.residual = d_residual.get(),
                                .rows = rows,
                                .hidden = hidden,
                                .delta = delta_bf16,
                                .weight = d_weight.get(),
                                .eps = kEps,
                                .out = y},
                               nullptr);
      if (status.ok()) {
        status = QuantizeActivationsInt8({.x = y,
                                          .type = ActivationType::kBfloat16,
                                          .rows = rows,
                                          .cols = hidden,
                                          .clip_ratio = c.clip_ratio,
                                          .codes = d_codes.get(),
                                          .codes_stride = stride,
                                          .scales = d_scales.get(),
                                          .status = d_status.get()},
                                         nullptr);
      }
    }
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return {d_residual.ToHost(), d_y.ToHost(), d_codes.ToHost(), d_scales.ToHost(),
            d_status.ToHost()[0]};
  };
  const Outputs fused = run(true);
  const Outputs unfused = run(false);
  EXPECT_TRUE(BitwiseEqual(unfused.residual, fused.residual)) << "residual vs unfused";
  EXPECT_TRUE(BitwiseEqual(unfused.y, fused.y)) << "y vs unfused";
  EXPECT_TRUE(BitwiseEqual(unfused.codes, fused.codes)) << "codes vs unfused";
  EXPECT_TRUE(BitwiseEqual(unfused.scales, fused.scales)) << "scales vs unfused";
  EXPECT_EQ(fused.status, 0);

  // The CPU reference.
  std::vector<float> cpu_residual = residual;
  const std::vector<float> delta_f32 = testing::Widen(delta);
  const auto reference = kernels::cpu::AddRmsNormQuantizeInt8(
      cpu_residual, c.delta ? std::span<const float>(delta_f32) : std::span<const float>(), rows,
      hidden, weight, kEps, c.clip_ratio);
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_TRUE(BitwiseEqual(cpu_residual, fused.residual)) << "residual vs CPU";
  const std::vector<float> gpu_y = testing::Widen(fused.y);
  for (int64_t i = 0; i < rows * hidden; ++i) {
    ASSERT_LE(std::fabs(gpu_y[i] - reference->normed[i]), testing::Bf16Ulp(reference->normed[i]))
        << "y element " << i;
  }
  // Codes and scales: the CPU quantizer of the GPU's own y, exactly; the zero tail of the stride.
  const auto quantized_gpu_y = quant::QuantizeRtn(
      gpu_y, rows, hidden,
      {.bits = 8, .symmetric = true, .group_size = 0, .clip_ratio = c.clip_ratio});
  ASSERT_TRUE(quantized_gpu_y.ok()) << quantized_gpu_y.status();
  int64_t tie_rows = 0;
  for (int64_t r = 0; r < rows; ++r) {
    SCOPED_TRACE(absl::StrCat("row ", r));
    const std::vector<int8_t> row_codes(fused.codes.begin() + r * stride,
                                        fused.codes.begin() + r * stride + hidden);
    const std::vector<int8_t> want(quantized_gpu_y->codes.begin() + r * hidden,
                                   quantized_gpu_y->codes.begin() + (r + 1) * hidden);
    EXPECT_TRUE(BitwiseEqual(want, row_codes)) << "codes vs CPU quantizer of the GPU's y";
    EXPECT_EQ(fused.scales[r], quantized_gpu_y->scales[r]) << "scale vs CPU quantizer";
    for (int64_t j = hidden; j < stride; ++j) EXPECT_EQ(fused.codes[r * stride + j], 0) << j;
    const bool same_y = std::memcmp(gpu_y.data() + r * hidden,
                                    reference->normed.data() + r * hidden, hidden * 4) == 0;
    if (!same_y) {
      ++tie_rows;
      continue;
    }
    const std::vector<int8_t> cpu_codes(reference->codes.codes.begin() + r * hidden,
                                        reference->codes.codes.begin() + (r + 1) * hidden);
    EXPECT_TRUE(BitwiseEqual(cpu_codes, row_codes)) << "codes vs the CPU reference";
    EXPECT_EQ(fused.scales[r], reference->codes.scales[r]) << "scale vs the CPU reference";
  }
  RecordProperty("rows_with_bf16_rounding_ties", static_cast<int>(tie_rows));
  if (!c.delta) {
    EXPECT_EQ(fused.scales[0], 0x3c00) << "an all-zero row has scale 1";
  }
}

// Tiny fixtures (hidden 64, 256), Llama-3-8B / Mixtral (4096) and 70B (8192) decode and prefill
// row counts, the widest row supported (16384), rows of 25 and 3 vector units (no whole warp),
// codes strides padded as the quantized linear pads K, clipping.
INSTANTIATE_TEST_SUITE_P(
    Shapes, AddRmsNormQuantizeGpuTest,
    ::testing::Values(FusedCase{1, 64, true, 1.0f, 0}, FusedCase{3, 64, false, 1.0f, 32},
                      FusedCase{3, 256, true, 0.9f, 0}, FusedCase{1, 4096, true, 1.0f, 0},
                      FusedCase{16, 4096, true, 1.0f, 0}, FusedCase{37, 4096, false, 0.85f, 0},
                      FusedCase{5, 8192, true, 1.0f, 0}, FusedCase{16, 8192, false, 1.0f, 0},
                      FusedCase{300, 4096, true, 1.0f, 0}, FusedCase{2, 16384, true, 1.0f, 0},
                      FusedCase{4, 100, true, 1.0f, 28}, FusedCase{3, 12, true, 1.0f, 20}),
    [](const auto& info) { return CaseName(info.param); });

// A row with an infinity: flagged, scale +inf and codes 0, as the quantizer does; other rows
// unaffected.
TEST(AddRmsNormQuantizeGpuTest, NonFiniteRowIsFlagged) {
  FF_SKIP_WITHOUT_GPU();
  testing::SeededRng random;
  const int64_t rows = 3, hidden = 256;
  std::vector<float> residual = random.Gaussian(rows * hidden);
  residual[hidden + 7] = INFINITY;
  const std::vector<float> weight(hidden, 1.0f);
  DeviceBuffer<float> d_residual(residual), d_weight(weight);
  DeviceBuffer<int8_t> d_codes(testing::Poisoned<int8_t>(rows * hidden));
  DeviceBuffer<uint16_t> d_scales(testing::Poisoned<uint16_t>(rows));
  DeviceBuffer<int32_t> d_status(std::vector<int32_t>{0});
  ASSERT_TRUE(AddRmsNormQuantizeInt8({.residual = d_residual.get(),
                                      .rows = rows,
                                      .hidden = hidden,
                                      .weight = d_weight.get(),
                                      .codes = d_codes.get(),
                                      .scales = d_scales.get(),
                                      .status = d_status.get()},
                                     nullptr)
                  .ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_EQ(d_status.ToHost()[0], kQuantizeNonFiniteInput);
  const auto scales = d_scales.ToHost();
  EXPECT_EQ(scales[1], 0x7c00);
  EXPECT_LT(scales[0], 0x7c00);
  EXPECT_LT(scales[2], 0x7c00);
  const auto codes = d_codes.ToHost();
  for (int64_t j = 0; j < hidden; ++j) EXPECT_EQ(codes[hidden + j], 0) << j;
}

// The CPU reference itself (no GPU): bf16 rounding ties to even, and what the per-token codes
// must satisfy: y ~ code * s within half a step (no clipping at clip 1), the largest |y| maps to
// +-126 or +-127 (s is max|y| / 127 rounded up to FP16, at most 2^-10 relative above), an
// all-zero row gets scale 1 and zero codes, and the residual gets exactly one float addition.
TEST(AddRmsNormQuantizeCpuReferenceTest, RoundsAndQuantizesAsSpecified) {
  using kernels::cpu::RoundToBf16;
  EXPECT_EQ(RoundToBf16(1.0f + 0x1p-8f), 1.0f);                       // tie: down to even
  EXPECT_EQ(RoundToBf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);         // tie: up to even
  EXPECT_EQ(RoundToBf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);  // above the tie
  EXPECT_EQ(RoundToBf16(-2.5f), -2.5f);
  EXPECT_TRUE(std::isnan(RoundToBf16(NAN)));

  testing::SeededRng random;
  const int64_t rows = 4, hidden = 256;
  std::vector<float> residual = random.Gaussian(rows * hidden, 2.0f);
  std::fill(residual.begin(), residual.begin() + hidden, 0.0f);  // row 0 stays zero (no delta)
  std::vector<float> delta = testing::Widen(testing::ToBf16(random.Gaussian(rows * hidden)));
  std::fill(delta.begin(), delta.begin() + hidden, 0.0f);
  std::vector<float> weight(hidden);
  for (float& w : weight) w = random.UniformFloat(0.5f, 1.5f);
  const std::vector<float> before = residual;
  const auto result =
      kernels::cpu::AddRmsNormQuantizeInt8(residual, delta, rows, hidden, weight, kEps, 1.0f);
  ASSERT_TRUE(result.ok()) << result.status();
  for (int64_t i = 0; i < rows * hidden; ++i) ASSERT_EQ(residual[i], before[i] + delta[i]) << i;
  EXPECT_EQ(result->codes.scales[0], 0x3c00);
  for (int64_t r = 0; r < rows; ++r) {
    const float s = HalfToFloat(result->codes.scales[r]);
    float max_abs = 0.0f;
    int max_code = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      const float y = result->normed[r * hidden + j];
      const int code = result->codes.codes[r * hidden + j];
      ASSERT_EQ(y, RoundToBf16(y)) << "y is a bf16 value";
      // Half a step, plus the float division's rounding of y / s (2^-24 of |y / s| <= 127).
      ASSERT_LE(std::fabs(static_cast<double>(code) * s - y), 0.5 * s * (1 + 2e-5))
          << r << ", " << j;
      if (std::fabs(y) >= max_abs) {
        max_abs = std::fabs(y);
        max_code = std::abs(code);
      }
    }
    if (r > 0) {
      EXPECT_GE(max_code, 126) << "row " << r;
    }
  }
}

// Argument checks on the host: fake, never dereferenced, aligned addresses.
template <typename T>
T* Fake(uintptr_t offset = 0) {
  return reinterpret_cast<T*>(uintptr_t{1} << 20 | offset);
}

DeviceAddRmsNormQuantize ValidArgs() {
  return {.residual = Fake<float>(),
          .rows = 2,
          .hidden = 64,
          .weight = Fake<float>(),
          .codes = Fake<int8_t>(),
          .scales = nullptr};  // null and checked last: no call below reaches a launch
}

::testing::AssertionResult FailsMentioning(const DeviceAddRmsNormQuantize& args,
                                           const std::string& text) {
  const absl::Status status = AddRmsNormQuantizeInt8(args, nullptr);
  if (status.code() == absl::StatusCode::kInvalidArgument &&
      std::string(status.message()).find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << status;
}

TEST(AddRmsNormQuantizeArgsTest, RejectsWhatItCannotRun) {
  EXPECT_TRUE(FailsMentioning(ValidArgs(), "scales is null"));
  for (int64_t hidden : {0, 2, 66, 16388}) {
    auto args = ValidArgs();
    args.hidden = hidden;
    EXPECT_TRUE(FailsMentioning(args, "hidden")) << hidden;
  }
  auto args = ValidArgs();
  args.rows = -1;
  EXPECT_TRUE(FailsMentioning(args, "rows"));
  for (int64_t stride : {60, 66}) {
    args = ValidArgs();
    args.codes_stride = stride;
    EXPECT_TRUE(FailsMentioning(args, "codes_stride")) << stride;
  }
  for (float clip : {0.0f, 1.5f, NAN}) {
    args = ValidArgs();
    args.clip_ratio = clip;
    EXPECT_TRUE(FailsMentioning(args, "clip_ratio")) << clip;
  }
  args = ValidArgs();
  args.eps = -1.0f;
  EXPECT_TRUE(FailsMentioning(args, "eps"));
  args = ValidArgs();
  args.residual = Fake<float>(4);
  EXPECT_TRUE(FailsMentioning(args, "residual must be 16-byte aligned"));
  args = ValidArgs();
  args.weight = nullptr;
  EXPECT_TRUE(FailsMentioning(args, "weight is null"));
  args = ValidArgs();
  args.codes = Fake<int8_t>(2);
  EXPECT_TRUE(FailsMentioning(args, "codes must be 4-byte aligned"));
  args = ValidArgs();
  args.delta = Fake<__nv_bfloat16>(4);
  EXPECT_TRUE(FailsMentioning(args, "delta must be 8-byte aligned"));
}

}  // namespace
}  // namespace flatfleet::cuda
