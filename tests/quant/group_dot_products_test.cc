// The tiled, threaded integer core (group_dot_products.h) against the scalar definitions it
// replaced: group sums exact, and every GEMM's float output bit for bit the scalar epilogue's, on
// shapes that span several weight tiles (16 rows) and activation tiles (64 rows; 256 and register
// tiles of 6 on the AVX2 panel path).
#include "kernels/cpu/quant/group_dot_products.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/integer_scale.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quik_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

// code - zero (2 code + 1 when balanced) from the raw fields, not through Centered.
int64_t RawCentered(const QuantizedMatrix& matrix, int64_t row, int64_t col) {
  const int64_t code = matrix.codes[row * matrix.cols + col];
  if (matrix.format.balanced) return 2 * code + 1;
  const int64_t groups = static_cast<int64_t>(matrix.scales.size()) / matrix.rows;
  const int64_t group = col / (matrix.cols / groups);
  return code - (matrix.zero_points.empty() ? 0 : matrix.zero_points[row * groups + group]);
}

// [m][n][g] in int64, one element at a time.
std::vector<int64_t> ScalarGroupSums(const QuantizedMatrix& x, const QuantizedMatrix& w) {
  const int64_t groups = static_cast<int64_t>(w.scales.size()) / w.rows;
  const int64_t group = w.cols / groups;
  std::vector<int64_t> sums(x.rows * w.rows * groups, 0);
  for (int64_t m = 0; m < x.rows; ++m) {
    for (int64_t n = 0; n < w.rows; ++n) {
      for (int64_t k = 0; k < w.cols; ++k) {
        sums[(m * w.rows + n) * groups + k / group] += RawCentered(x, m, k) * RawCentered(w, n, k);
      }
    }
  }
  return sums;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

class GroupDotProductsTest : public test_util::RandomTest {
 protected:
  QuantizedMatrix Quantize(int64_t rows, int64_t cols, const QuantFormat& format) {
    std::vector<float> values = Gaussian(rows * cols, UniformFloat(0.05f, 2.0f));
    for (float& v : values) v += 0.2f;  // asymmetric formats get non-zero zero points
    auto q = QuantizeRtn(values, rows, cols, format);
    EXPECT_TRUE(q.ok()) << q.status();
    return *std::move(q);
  }

  struct Case {
    QuantFormat activation;
    QuantFormat weight;
  };
  std::vector<Case> Cases() {
    return {
        {{.bits = 8}, {.bits = 8}},                                          // W8A8
        {{.bits = 8}, {.bits = 4, .group_size = 32}},                        // W4A8 symmetric
        {{.bits = 8}, {.bits = 4, .symmetric = false, .group_size = 128}},   // W4A8 zero points
        {{.bits = 4, .symmetric = false}, {.bits = 4, .group_size = 64}},    // W4A4
        {{.bits = 8}, {.bits = 2, .balanced = true}},                        // ABQ balanced W2A8
        {{.bits = 8, .symmetric = false}, {.bits = 3, .symmetric = false}},  // 8-bit zero points
    };
  }
  // QuantizedGemm's group sums equal the scalar definition's, and both GEMMs' outputs the scalar
  // epilogue's in the header's order, bit for bit.
  void ExpectScalarDefinition(const QuantizedMatrix& x, const QuantizedMatrix& w) {
    const int64_t m = x.rows, n = w.rows;
    auto result = QuantizedGemm(x, w);
    ASSERT_TRUE(result.ok()) << result.status();
    const std::vector<int64_t> sums = ScalarGroupSums(x, w);
    const int64_t groups = w.GroupsPerRow();
    ASSERT_EQ(result->group_accumulators.size(), sums.size());
    for (size_t i = 0; i < sums.size(); ++i) ASSERT_EQ(result->group_accumulators[i], sums[i]) << i;
    std::vector<float> expected(m * n);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        float partial = 0.0f;
        for (int64_t g = 0; g < groups; ++g) {
          partial =
              std::fma(static_cast<float>(sums[(i * n + j) * groups + g]), w.Scale(j, g), partial);
        }
        expected[i * n + j] = partial * x.Scale(i, 0);
      }
    }
    std::vector<float> output_only(m * n, std::nanf(""));  // poisoned
    ASSERT_TRUE(QuantizedGemmOutput(x, w, output_only).ok());
    for (int64_t i = 0; i < m * n; ++i) {
      ASSERT_TRUE(SameBits(result->output[i], expected[i])) << i;
      ASSERT_TRUE(SameBits(output_only[i], expected[i])) << i;
    }
  }
  // Shapes across the tile edges: m crosses 64, n crosses 16.
  void RandomShape(int64_t& m, int64_t& n, int64_t& k) {
    m = UniformInt(1, 3) == 1 ? UniformInt(1, 5) : UniformInt(60, 140);
    n = UniformInt(1, 3) == 1 ? UniformInt(1, 15) : UniformInt(17, 70);
    k = 128 * UniformInt(1, 3);
  }
};

TEST_F(GroupDotProductsTest, GroupSumsAndOutputsEqualTheScalarDefinitionBitForBit) {
  for (const Case& c : Cases()) {
    int64_t m, n, k;
    RandomShape(m, n, k);
    SCOPED_TRACE(::testing::Message() << "m " << m << " n " << n << " k " << k << " weight bits "
                                      << c.weight.bits << " group " << c.weight.group_size);
    ExpectScalarDefinition(Quantize(m, k, c.activation), Quantize(n, k, c.weight));
  }
}

// The AVX2 panel path's edges: 6-row register tiles (remainders 1-5), 256-row tasks, 16-row panels
// (padding rows), K not a multiple of the 16-column packing step, groups of 2 to 128 with and
// without whole 8-group transposes, the odd group sizes and single rows that take the direct loop.
TEST_F(GroupDotProductsTest, PanelTileEdgesEqualTheScalarDefinitionBitForBit) {
  struct Edge {
    int64_t m, n, k;
    QuantFormat activation, weight;
  };
  const std::vector<Edge> edges = {
      {257, 33, 96, {.bits = 8}, {.bits = 4, .symmetric = false, .group_size = 32}},
      {263, 17, 320, {.bits = 8}, {.bits = 4, .symmetric = false, .group_size = 32}},
      {7, 16, 20, {.bits = 8}, {.bits = 8, .group_size = 10}},
      {6, 5, 36, {.bits = 8}, {.bits = 2, .group_size = 2, .balanced = true}},
      {13, 40, 21, {.bits = 8}, {.bits = 4, .symmetric = false, .group_size = 7}},
      {1, 17, 256, {.bits = 8}, {.bits = 4, .symmetric = false, .group_size = 128}},
      {2, 8, 48, {.bits = 4, .symmetric = false}, {.bits = 4, .group_size = 16}},
      {11, 31, 1040, {.bits = 8, .symmetric = false}, {.bits = 3, .symmetric = false}},
      {5, 18, 144, {.bits = 8}, {.bits = 8, .symmetric = false, .group_size = 8}},
  };
  for (const Edge& e : edges) {
    // Random shifts around each edge shape keep the remainders moving between seeds.
    const int64_t m = e.m + UniformInt(0, 1) * (e.m > 1 ? UniformInt(-1, 1) : 0);
    const int64_t n = e.n + UniformInt(-1, 1) * (e.n > 1 ? 1 : 0);
    SCOPED_TRACE(::testing::Message() << "m " << m << " n " << n << " k " << e.k << " weight bits "
                                      << e.weight.bits << " group " << e.weight.group_size);
    ExpectScalarDefinition(Quantize(m, e.k, e.activation), Quantize(n, e.k, e.weight));
  }
}

// Exactly full activation tiles (64, 128 rows) and a partial weight tile (n = 130): the shapes the
// GPU backend test compares against at 63 / 64 rows.
TEST_F(GroupDotProductsTest, FullActivationTilesEqualTheScalarDefinition) {
  for (const int64_t m : {int64_t{63}, int64_t{64}, int64_t{65}, int64_t{128}}) {
    for (const Case& c : Cases()) {
      const int64_t n = 130, k = 512;
      SCOPED_TRACE(::testing::Message() << "m " << m << " weight bits " << c.weight.bits);
      const QuantizedMatrix x = Quantize(m, k, c.activation);
      const QuantizedMatrix w = Quantize(n, k, c.weight);
      auto result = QuantizedGemm(x, w);
      ASSERT_TRUE(result.ok()) << result.status();
      const std::vector<int64_t> sums = ScalarGroupSums(x, w);
      ASSERT_EQ(result->group_accumulators.size(), sums.size());
      for (size_t i = 0; i < sums.size(); ++i) {
        ASSERT_EQ(result->group_accumulators[i], sums[i]) << i;
      }
    }
  }
}

TEST_F(GroupDotProductsTest, EveryTileIsFoldedOnceAndCoversEachOutput) {
  int64_t m, n, k;
  RandomShape(m, n, k);
  const QuantizedMatrix x = Quantize(m, k, {.bits = 8});
  const QuantizedMatrix w = Quantize(n, k, {.bits = 4, .group_size = 64});
  std::vector<int> visits(m * n, 0);  // each element is written by exactly one fold call
  ForEachGroupDotProducts(
      x, w, [&](int64_t row, int64_t n_begin, int64_t n_end, const int32_t*, int64_t group_stride) {
        ASSERT_LT(n_begin, n_end);
        ASSERT_GE(group_stride, n_end - n_begin);
        for (int64_t j = n_begin; j < n_end; ++j) ++visits[row * n + j];
      });
  for (int64_t i = 0; i < m * n; ++i) ASSERT_EQ(visits[i], 1) << i;
}

TEST_F(GroupDotProductsTest, OutputOnlyRefusesAWrongSizedOutput) {
  const QuantizedMatrix x = Quantize(3, 128, {.bits = 8});
  const QuantizedMatrix w = Quantize(5, 128, {.bits = 4, .group_size = 32});
  std::vector<float> output(14);
  const absl::Status status = QuantizedGemmOutput(x, w, output);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("14 values for [3, 5]"), std::string::npos) << status;
}

TEST_F(GroupDotProductsTest, ShapesOnlyChecksKeepTheKernelInBoundsAndFullChecksScanCodes) {
  const QuantizedMatrix x = Quantize(3, 128, {.bits = 8});
  QuantizedMatrix w = Quantize(5, 128, {.bits = 4, .group_size = 32});
  std::vector<float> output(15);
  w.codes[7] = 100;  // outside INT4's range: only the full check reads every code
  EXPECT_EQ(QuantizedGemmOutput(x, w, output).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(QuantizedGemmOutput(x, w, output, OperandChecks::kShapesOnly).ok());
  w.codes.pop_back();  // a size that would read past the end is refused by both
  for (OperandChecks checks : {OperandChecks::kFull, OperandChecks::kShapesOnly}) {
    const absl::Status status = QuantizedGemmOutput(x, w, output, checks);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find("inconsistent sizes"), std::string::npos) << status;
  }
}

TEST_F(GroupDotProductsTest, IntegerScaleGemmEqualsItsScalarDefinition) {
  int64_t m, n, k;
  RandomShape(m, n, k);
  const QuantizedMatrix x = Quantize(m, k, {.bits = 8});
  const QuantizedMatrix w = Quantize(n, k, {.bits = 4, .symmetric = false, .group_size = 64});
  auto scaled = MakeIntegerScaledWeight(w, x.format);
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  auto result = IntegerScaleGemm(x, *scaled);
  ASSERT_TRUE(result.ok()) << result.status();
  const std::vector<int64_t> sums = ScalarGroupSums(x, w);
  const int64_t groups = w.GroupsPerRow();
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (int64_t g = 0; g < groups; ++g) {
        acc += sums[(i * n + j) * groups + g] * scaled->multipliers[j * groups + g];
      }
      ASSERT_EQ(result->accumulators[i * n + j], acc) << i << " " << j;
      const float expected = std::ldexp(
          (static_cast<float>(acc) * x.Scale(i, 0)) * HalfToFloat(scaled->base_scales[j]),
          -scaled->amplifier_bits);
      ASSERT_TRUE(SameBits(result->output[i * n + j], expected)) << i << " " << j;
    }
  }
}

TEST_F(GroupDotProductsTest, QuikOutliersAddTheirScalarSumToTheBase) {
  int64_t m, n, k;
  RandomShape(m, n, k);
  const std::vector<float> weights = Gaussian(n * k);
  const std::vector<float> activations = Gaussian(m * k, 3.0f);
  const std::vector<int64_t> outliers = {1, 7, k / 2, k - 1};
  auto weight = QuantizeQuikWeight(weights, n, k, outliers, {.bits = 4, .symmetric = false});
  ASSERT_TRUE(weight.ok()) << weight.status();
  auto result = QuikGemm(activations, m, *weight, {.bits = 8});
  ASSERT_TRUE(result.ok()) << result.status();
  const int64_t count = static_cast<int64_t>(outliers.size());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int64_t o = 0; o < count; ++o) {
        // The activations' outlier columns are stored as FP16, as the weights' are.
        sum = std::fma(HalfToFloat(FloatToHalf(activations[i * k + outliers[o]])),
                       HalfToFloat(weight->outlier_weights[j * count + o]), sum);
      }
      ASSERT_TRUE(SameBits(result->outlier_output[i * n + j], sum)) << i << " " << j;
      ASSERT_TRUE(SameBits(result->output[i * n + j], result->base.output[i * n + j] + sum));
    }
  }
}

}  // namespace
}  // namespace flatfleet::quant
