#include "kernels/cpu/quant/quik_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/gemm_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class QuikGemmTest : public test_util::RandomTest {
 protected:
  // QUIK on random activations with 8 planted outlier channels: the integer part must be exact
  // and the output match the mixed reference; `ratio` is QUIK's squared output error over plain
  // INT4's (both against the float product).
  void CheckOnPlantedOutliers(double* ratio);
};

void QuikGemmTest::CheckOnPlantedOutliers(double* ratio) {
  const int64_t m = 12, n = 40, k = 264, outlier_count = 8;
  std::vector<float> x = Gaussian(m * k);
  std::vector<int64_t> planted;
  while (static_cast<int64_t>(planted.size()) < outlier_count) {
    const int64_t c = UniformInt(0, k - 1);
    if (std::find(planted.begin(), planted.end(), c) == planted.end()) planted.push_back(c);
  }
  std::sort(planted.begin(), planted.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c : planted) x[i * k + c] *= UniformFloat(40.0f, 80.0f);
  const std::vector<float> w = Gaussian(n * k, 0.05f);

  const std::vector<int64_t> outliers = SelectOutlierChannels(x, m, k, outlier_count);
  EXPECT_EQ(outliers, planted);
  const QuantFormat int4_weights{.bits = 4, .group_size = 128};
  const QuantFormat int4_tokens{.bits = 4};
  auto weight = QuantizeQuikWeight(w, n, k, outliers, int4_weights);
  ASSERT_TRUE(weight.ok()) << weight.status();
  ASSERT_EQ(weight->base.cols, k - outlier_count);
  auto result = QuikGemm(x, m, *weight, int4_tokens);
  ASSERT_TRUE(result.ok()) << result.status();

  // Integer part: exactly the int64 sums of the base codes.
  const std::vector<int64_t> naive =
      test_util::NaiveGroupSums(result->base_activations, weight->base);
  for (size_t i = 0; i < naive.size(); ++i) ASSERT_EQ(result->base.group_accumulators[i], naive[i]);
  // Whole output: float64 of the dequantized base plus the FP16 outlier products.
  const test_util::DoubleProduct base =
      test_util::DequantizedProduct(result->base_activations, weight->base);
  double quik_error = 0.0, plain_error = 0.0;
  auto plain_x = QuantizeRtn(x, m, k, int4_tokens);
  auto plain_w = QuantizeRtn(w, n, k, {.bits = 4, .group_size = 0});
  ASSERT_TRUE(plain_x.ok() && plain_w.ok());
  const test_util::DoubleProduct plain = test_util::DequantizedProduct(*plain_x, *plain_w);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double outlier_sum = 0.0, outlier_abs = 0.0, exact = 0.0;
      for (int64_t c : outliers) {
        const double term =
            double{HalfToFloat(FloatToHalf(x[i * k + c]))} * HalfToFloat(FloatToHalf(w[j * k + c]));
        outlier_sum += term;
        outlier_abs += std::fabs(term);
      }
      for (int64_t c = 0; c < k; ++c) exact += double{x[i * k + c]} * w[j * k + c];
      const double reference = base.value[i * n + j] + outlier_sum;
      const double tolerance = (weight->base.GroupsPerRow() + 3 + outlier_count + 2) *
                               std::ldexp(1.0, -24) * (base.absolute_sum[i * n + j] + outlier_abs);
      ASSERT_NEAR(result->output[i * n + j], reference, tolerance) << i << ", " << j;
      quik_error += std::pow(result->output[i * n + j] - exact, 2);
      plain_error += std::pow(plain.value[i * n + j] - exact, 2);
    }
  }
  *ratio = quik_error / plain_error;
}

TEST_F(QuikGemmTest, IntegerPartIsExactAndOutputMatchesTheMixedReference) {
  double ratio = 1.0;
  CheckOnPlantedOutliers(&ratio);
}

// Keeping the outliers aside is what makes 4-bit activations usable here: QUIK's squared error
// below a quarter of plain INT4's, on a fixed seed. Over 100 fresh seeds the ratio was 0.0059 to
// 0.0135 (median 0.0087).
TEST_F(QuikGemmTest, KeepingOutliersAsideBeatsPlainInt4) {
  UseFixedSeed(7919);
  double ratio = 1.0;
  CheckOnPlantedOutliers(&ratio);
  std::printf("[ ratio    ] %.4f\n", ratio);
  EXPECT_LT(ratio, 0.25);
}

TEST_F(QuikGemmTest, RejectsBadOutlierLists) {
  const std::vector<float> w = Gaussian(4 * 32);
  EXPECT_FALSE(QuantizeQuikWeight(w, 4, 32, {3, 3}, {.bits = 4}).ok());
  EXPECT_FALSE(QuantizeQuikWeight(w, 4, 32, {32}, {.bits = 4}).ok());
  EXPECT_FALSE(QuantizeQuikWeight(w, 4, 32, {1}, {.bits = 4, .group_size = 8}).ok());  // 31 cols
}

}  // namespace
}  // namespace flatfleet::quant
