#include "kernels/cpu/quant/quantized_gemm.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/gemm_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class QuantizedGemmTest : public test_util::RandomTest {
 protected:
  QuantizedMatrix Quantize(int64_t rows, int64_t cols, const QuantFormat& format, float shift = 0) {
    std::vector<float> values = Gaussian(rows * cols, UniformFloat(0.05f, 2.0f));
    for (float& v : values) v += shift;
    auto q = QuantizeRtn(values, rows, cols, format);
    EXPECT_TRUE(q.ok()) << q.status();
    return *std::move(q);
  }

  // Integer parts equal the int64 loop exactly; the float output is within the epilogue's
  // rounding, (G + 3) * 2^-24 * sum_k |xhat * what|, of the float64 product.
  void ExpectMatchesReferences(const QuantizedMatrix& x, const QuantizedMatrix& w,
                               const QuantizedGemmResult& result) {
    const std::vector<int64_t> naive = test_util::NaiveGroupSums(x, w);
    ASSERT_EQ(result.group_accumulators.size(), naive.size());
    for (size_t i = 0; i < naive.size(); ++i)
      ASSERT_EQ(result.group_accumulators[i], naive[i]) << i;
    const test_util::DoubleProduct reference = test_util::DequantizedProduct(x, w);
    const double relative = (result.groups + 3) * std::ldexp(1.0, -24);
    for (size_t i = 0; i < reference.value.size(); ++i) {
      ASSERT_NEAR(result.output[i], reference.value[i], relative * reference.absolute_sum[i]) << i;
    }
  }
};

TEST_F(QuantizedGemmTest, W8A8PerChannelPerToken) {
  const int64_t m = UniformInt(1, 8), n = UniformInt(1, 24), k = 64 * UniformInt(1, 8);
  const QuantizedMatrix x = Quantize(m, k, {.bits = 8});
  const QuantizedMatrix w = Quantize(n, k, {.bits = 8});
  auto result = GemmW8A8(x, w);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->groups, 1);
  ExpectMatchesReferences(x, w, *result);
}

TEST_F(QuantizedGemmTest, W8A8WithPerTensorStaticActivations) {
  const int64_t m = UniformInt(1, 8), n = UniformInt(1, 24), k = 64 * UniformInt(1, 8);
  auto scale = CalibratePerTensorScale(Gaussian(m * k), 8, 1.0f);
  ASSERT_TRUE(scale.ok());
  auto x = QuantizeWithStaticScale(Gaussian(m * k), m, k, 8, *scale);
  ASSERT_TRUE(x.ok());
  const QuantizedMatrix w = Quantize(n, k, {.bits = 8});
  auto result = GemmW8A8(*x, w);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectMatchesReferences(*x, w, *result);
}

TEST_F(QuantizedGemmTest, W4A8PerGroupSymmetricAndWithZeroPoints) {
  for (bool symmetric : {true, false}) {
    for (int64_t group : {32, 128}) {
      const int64_t m = UniformInt(1, 8), n = UniformInt(1, 24), k = 128 * UniformInt(1, 4);
      const QuantizedMatrix x = Quantize(m, k, {.bits = 8});
      const QuantizedMatrix w =
          Quantize(n, k, {.bits = 4, .symmetric = symmetric, .group_size = group}, 0.3f);
      auto result = GemmW4A8(x, w);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->groups, k / group);
      ExpectMatchesReferences(x, w, *result);
    }
  }
}

TEST_F(QuantizedGemmTest, W4A4) {
  const int64_t m = UniformInt(1, 8), n = UniformInt(1, 24), k = 128 * UniformInt(1, 4);
  const QuantizedMatrix x = Quantize(m, k, {.bits = 4, .symmetric = false}, 0.5f);
  const QuantizedMatrix w = Quantize(n, k, {.bits = 4, .group_size = 128});
  auto result = GemmW4A4(x, w);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectMatchesReferences(x, w, *result);
}

TEST_F(QuantizedGemmTest, EveryWeightAndActivationWidthWithZeroPoints) {
  for (int w_bits = 2; w_bits <= 8; ++w_bits) {
    for (int a_bits = 2; a_bits <= 8; ++a_bits) {
      SCOPED_TRACE(::testing::Message() << "W" << w_bits << "A" << a_bits);
      const bool w_symmetric = UniformInt(0, 1) == 1, a_symmetric = UniformInt(0, 1) == 1;
      const int64_t m = UniformInt(1, 4), n = UniformInt(1, 8), k = 64 * UniformInt(1, 3);
      const QuantizedMatrix x = Quantize(m, k, {.bits = a_bits, .symmetric = a_symmetric}, 0.4f);
      const QuantizedMatrix w = Quantize(
          n, k, {.bits = w_bits, .symmetric = w_symmetric, .group_size = UniformInt(0, 1) ? 32 : 0},
          -0.2f);
      auto result = QuantizedGemm(x, w);
      ASSERT_TRUE(result.ok()) << result.status();
      ExpectMatchesReferences(x, w, *result);
    }
  }
}

TEST_F(QuantizedGemmTest, WorstCaseOperandsStayExactInInt32) {
  // All codes at the extremes with the same sign: |acc| reaches K * 127 * 127.
  const int64_t k = 133144;  // the largest K for symmetric INT8 x INT8
  QuantizedMatrix x = test_util::EmptyQuantizedMatrix(1, k, {.bits = 8});
  x.codes.assign(k, -127);
  x.scales.assign(1, 0x3c00);
  QuantizedMatrix w = x;
  auto result = GemmW8A8(x, w);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(int64_t{result->group_accumulators[0]}, test_util::NaiveGroupSums(x, w)[0]);
  // One more column could overflow and is refused.
  x.cols = w.cols = k + 1;
  x.codes.push_back(-127);
  w.codes.push_back(-127);
  EXPECT_EQ(GemmW8A8(x, w).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(QuantizedGemmTest, RejectsInconsistentMatrices) {
  const QuantizedMatrix x = Quantize(2, 64, {.bits = 8});
  const QuantizedMatrix w = Quantize(3, 64, {.bits = 4, .symmetric = false, .group_size = 32});
  ASSERT_TRUE(QuantizedGemm(x, w).ok());
  QuantizedMatrix bad = w;
  bad.codes[5] = 8;  // beyond 4 bits
  EXPECT_FALSE(QuantizedGemm(x, bad).ok());
  bad = w;
  bad.zero_points.pop_back();
  EXPECT_FALSE(QuantizedGemm(x, bad).ok());
  bad = w;
  bad.scales[0] = 0;  // FP16 zero
  EXPECT_FALSE(QuantizedGemm(x, bad).ok());
  bad = w;
  bad.format.group_size = 48;  // does not divide 64
  EXPECT_FALSE(QuantizedGemm(x, bad).ok());
}

TEST_F(QuantizedGemmTest, NamedEntryPointsRejectOtherFormats) {
  const QuantizedMatrix x8 = Quantize(2, 64, {.bits = 8});
  const QuantizedMatrix w4 = Quantize(3, 64, {.bits = 4, .group_size = 32});
  const QuantizedMatrix w8_grouped = Quantize(3, 64, {.bits = 8, .group_size = 32});
  EXPECT_FALSE(GemmW8A8(x8, w4).ok());
  EXPECT_FALSE(GemmW8A8(x8, w8_grouped).ok());
  EXPECT_FALSE(GemmW4A4(x8, w4).ok());
  EXPECT_TRUE(GemmW4A8(x8, w4).ok());
  const QuantizedMatrix x_grouped = Quantize(2, 64, {.bits = 8, .group_size = 32});
  EXPECT_FALSE(QuantizedGemm(x_grouped, w4).ok());
  const QuantizedMatrix w_other_k = Quantize(3, 96, {.bits = 4});
  EXPECT_FALSE(QuantizedGemm(x8, w_other_k).ok());
}

}  // namespace
}  // namespace flatfleet::quant
