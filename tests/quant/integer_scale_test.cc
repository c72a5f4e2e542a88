#include "kernels/cpu/quant/integer_scale.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/gemm_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
const QuantFormat kInt8PerToken{.bits = 8};

class IntegerScaleTest : public test_util::RandomTest {
 protected:
  QuantizedMatrix QuantizeGaussian(int64_t rows, int64_t cols, const QuantFormat& format) {
    auto q = QuantizeRtn(Gaussian(rows * cols, UniformFloat(0.1f, 2.0f)), rows, cols, format);
    EXPECT_TRUE(q.ok()) << q.status();
    return *std::move(q);
  }

  // Largest within-channel ratio s_g / s_min, computed here independently of the library.
  static double MaxScaleRatio(const QuantizedMatrix& w) {
    double ratio = 1.0;
    for (int64_t n = 0; n < w.rows; ++n) {
      double lo = INFINITY, hi = 0.0;
      for (int64_t g = 0; g < w.GroupsPerRow(); ++g) {
        lo = std::min<double>(lo, w.Scale(n, g));
        hi = std::max<double>(hi, w.Scale(n, g));
      }
      ratio = std::max(ratio, hi / lo);
    }
    return ratio;
  }
};

TEST_F(IntegerScaleTest, AmplifierIsTheLargestThatCannotOverflowInt32) {
  const int64_t n = 48, k = 1024;
  QuantizedMatrix w = QuantizeGaussian(n, k, {.bits = 4, .group_size = 128});
  // One channel with a wide spread of group scales forces a smaller amplifier.
  const double spread = UniformFloat(3.0f, 40.0f);
  for (int64_t g = 0; g < w.GroupsPerRow(); ++g) {
    w.scales[g] = FloatToHalf(w.Scale(0, 0) * (g == 3 ? spread : 1.0f));
  }
  auto scaled = MakeIntegerScaledWeight(w, kInt8PerToken);
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  const int a = scaled->amplifier_bits;
  const int64_t per_unit = k * 127 * 7;
  const double ratio = MaxScaleRatio(w);
  EXPECT_LE(per_unit * std::nearbyint(std::ldexp(ratio, a)), kInt32Max);
  if (a < 16) {
    EXPECT_GT(per_unit * std::nearbyint(std::ldexp(ratio, a + 1)), kInt32Max);
  }
  for (int64_t ch = 0; ch < n; ++ch) {
    const double base = HalfToFloat(scaled->base_scales[ch]);
    for (int64_t g = 0; g < w.GroupsPerRow(); ++g) {
      const int32_t mult = scaled->multipliers[ch * w.GroupsPerRow() + g];
      EXPECT_GE(mult, 1 << a);
      EXPECT_LE(std::fabs(mult - std::ldexp(w.Scale(ch, g) / base, a)), 0.5);
    }
  }
}

class IntegerScaleBoundTest : public IntegerScaleTest {
 protected:
  void CheckAgainstFloatScale(bool symmetric_weights) {
    const int64_t m = 16, n = 64, k = 1024;
    const QuantizedMatrix x = QuantizeGaussian(m, k, kInt8PerToken);
    const QuantizedMatrix w =
        QuantizeGaussian(n, k, {.bits = 4, .symmetric = symmetric_weights, .group_size = 128});
    auto scaled = MakeIntegerScaledWeight(w, kInt8PerToken);
    ASSERT_TRUE(scaled.ok()) << scaled.status();
    const int a = scaled->amplifier_bits;
    EXPECT_GE(a, 6);  // Gaussian weights have modest scale spreads, so the amplifier is not tiny
    auto float_scale = GemmW4A8(x, w);
    ASSERT_TRUE(float_scale.ok());
    auto integer_scale = IntegerScaleGemm(x, *scaled);
    ASSERT_TRUE(integer_scale.ok()) << integer_scale.status();

    const int64_t groups = w.GroupsPerRow();
    const std::vector<int64_t> group_sums = test_util::NaiveGroupSums(x, w);
    double max_bound = 0.0, max_ratio = 0.0, sum_sq_output = 0.0;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        int64_t exact_acc = 0;
        double abs_acc = 0.0, abs_scaled = 0.0;
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t acc_g = group_sums[(i * n + j) * groups + g];
          exact_acc += acc_g * scaled->multipliers[j * groups + g];
          abs_acc += std::fabs(static_cast<double>(acc_g));
          abs_scaled += std::fabs(static_cast<double>(acc_g)) * w.Scale(j, g);
        }
        // The integer part is exact (int64 reference).
        ASSERT_EQ(integer_scale->accumulators[i * n + j], exact_acc);
        const double s_x = x.Scale(i, 0), s_min = HalfToFloat(scaled->base_scales[j]);
        const double bound = s_x * s_min * std::ldexp(abs_acc, -(a + 1));
        const double float_rounding = (groups + 5) * std::ldexp(1.0, -24) * s_x * abs_scaled;
        // Relative form of the bound.
        EXPECT_LE(bound, std::ldexp(s_x * abs_scaled, -(a + 1)) * (1 + 1e-12));
        const double error =
            std::fabs(double{integer_scale->output[i * n + j]} - float_scale->output[i * n + j]);
        ASSERT_LE(error, bound + float_rounding) << i << ", " << j;
        max_bound = std::max(max_bound, bound);
        max_ratio = std::max(max_ratio, error / bound);
        sum_sq_output += double{float_scale->output[i * n + j]} * float_scale->output[i * n + j];
      }
    }
    const double rms_output = std::sqrt(sum_sq_output / (m * n));
    // The bound is small against the outputs, and not loose by orders of magnitude.
    EXPECT_LT(max_bound, 0.05 * rms_output);
    EXPECT_GT(max_ratio, 0.05);
    RecordProperty("amplifier_bits", a);
    RecordProperty("max_error_over_bound", std::to_string(max_ratio));
    RecordProperty("max_bound_over_rms_output", std::to_string(max_bound / rms_output));
    std::printf(
        "integer scale (symmetric weights %d): a = %d, max error/bound = %.3f, max bound/rms(y) = "
        "%.2e\n",
        symmetric_weights, a, max_ratio, max_bound / rms_output);
  }
};

TEST_F(IntegerScaleBoundTest, SymmetricW4A8MatchesFloatScaleWithinTheDerivedBound) {
  CheckAgainstFloatScale(true);
}

TEST_F(IntegerScaleBoundTest, ZeroPointW4A8MatchesFloatScaleWithinTheDerivedBound) {
  CheckAgainstFloatScale(false);
}

TEST_F(IntegerScaleTest, WorstCaseAccumulationStaysExact) {
  // Every weight code +7 and every activation code +127 with the largest multiplier the
  // amplifier allows: the accumulator meets the worst case the bound was derived for.
  const int64_t k = 4096, groups = 32;
  QuantizedMatrix w = test_util::EmptyQuantizedMatrix(1, k, {.bits = 4, .group_size = 128});
  w.codes.assign(k, 7);
  for (int64_t g = 0; g < groups; ++g) {
    w.scales.push_back(FloatToHalf(g == 0 ? 0.01f : 4.5f * 0.01f));  // ratio 4.5 -> a = 7
  }
  QuantizedMatrix x = test_util::EmptyQuantizedMatrix(1, k, {.bits = 8});
  x.codes.assign(k, 127);
  x.scales.assign(1, FloatToHalf(0.5f));
  auto scaled = MakeIntegerScaledWeight(w, x.format);
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  EXPECT_EQ(scaled->amplifier_bits, 7);
  auto result = IntegerScaleGemm(x, *scaled);
  ASSERT_TRUE(result.ok()) << result.status();
  int64_t expected = 0;
  for (int64_t g = 0; g < groups; ++g) expected += int64_t{128 * 7 * 127} * scaled->multipliers[g];
  EXPECT_EQ(result->accumulators[0], expected);
  EXPECT_GT(expected, kInt32Max / 2);  // genuinely close to the int32 limit
}

TEST_F(IntegerScaleTest, RefusesWhenEvenNoAmplifierAvoidsOverflow) {
  const int64_t k = 8192;
  QuantizedMatrix w = QuantizeGaussian(2, k, {.bits = 4, .group_size = 128});
  w.scales[1] = FloatToHalf(w.Scale(0, 0) * 2000.0f);  // ratio 2000: K * 889 * 2000 > 2^31
  EXPECT_EQ(MakeIntegerScaledWeight(w, kInt8PerToken).status().code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace flatfleet::quant
