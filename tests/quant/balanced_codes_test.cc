// ABQ-LLM's balanced ("bit balance") weight codes: value = scale * (2 * code + 1).
#include <cmath>
#include <cstdio>
#include <set>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/bit_packing.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/quant_spec.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class BalancedCodesTest : public test_util::RandomTest {};

QuantFormat Balanced(int bits, int64_t group_size) {
  return {.bits = bits, .symmetric = true, .group_size = group_size, .balanced = true};
}

TEST_F(BalancedCodesTest, LevelsAreOddAndSymmetricAndErrorsBoundedByTheHalfStep) {
  for (int bits : {2, 3}) {
    const int64_t rows = UniformInt(1, 6), group = 32, cols = group * UniformInt(1, 4);
    const std::vector<float> w = Gaussian(rows * cols, UniformFloat(0.01f, 1.0f));
    auto q = QuantizeRtn(w, rows, cols, Balanced(bits, group));
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_TRUE(q->Validate().ok()) << q->Validate();
    EXPECT_EQ(MinCode(q->format), -(1 << (bits - 1)));
    EXPECT_EQ(MaxAbsCodeMinusZero(q->format), (1 << bits) - 1);
    std::set<int32_t> levels;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int32_t odd = q->Centered(r, c);
        EXPECT_EQ(odd, 2 * q->codes[r * cols + c] + 1);
        EXPECT_NE(odd % 2, 0);  // never a zero level
        EXPECT_LE(std::abs(odd), (1 << bits) - 1);
        levels.insert(odd);
        // The nearest odd multiple of the half-step: error <= one half-step (no clipping).
        const float s = q->Scale(r, c / group);
        EXPECT_LE(std::fabs(w[r * cols + c] - s * odd), s * (1.0f + 1e-5f)) << r << "," << c;
      }
    }
    // Each group's largest |w| lands on an extreme level +-(2^b - 1); with enough values all
    // interior levels are used too (both extremes only when groups peak with both signs).
    if (rows * cols >= 128) EXPECT_GE(static_cast<int>(levels.size()), (1 << bits) - 1);
    EXPECT_TRUE(levels.count((1 << bits) - 1) + levels.count(1 - (1 << bits)) > 0);
  }
}

// A margin on random weights, so a fixed seed: over 100 fresh seeds the MSE ratio was 0.440 to
// 0.598 (median 0.510) against the bound 0.7.
TEST_F(BalancedCodesTest, TwoBitBalancedBeatsRestrictedSymmetricInt2) {
  UseFixedSeed(7919);
  const int64_t rows = 16, cols = 128;
  const std::vector<float> w = Gaussian(rows * cols);
  auto balanced = QuantizeRtn(w, rows, cols, Balanced(2, 128));
  auto symmetric = QuantizeRtn(w, rows, cols, {.bits = 2, .symmetric = true, .group_size = 128});
  ASSERT_TRUE(balanced.ok() && symmetric.ok());
  auto mse = [&](const QuantizedMatrix& q) {
    const std::vector<float> d = q.Dequantize();
    double sum = 0.0;
    for (size_t i = 0; i < w.size(); ++i) sum += (d[i] - w[i]) * (d[i] - w[i]);
    return sum / w.size();
  };
  // {-3, -1, 1, 3} half-steps against {-1, 0, 1} steps: 4 levels instead of 3.
  std::printf("[ ratio    ] %.4f\n", mse(*balanced) / mse(*symmetric));
  EXPECT_LT(mse(*balanced), 0.7 * mse(*symmetric));
}

TEST_F(BalancedCodesTest, PackedCodesRoundTripInSignedAndUnsignedStorage) {
  for (int bits : {2, 3}) {
    const int64_t count = UniformInt(1, 200);
    const std::vector<float> w = Gaussian(count);
    auto q = QuantizeRtn(w, 1, count, Balanced(bits, 0));
    ASSERT_TRUE(q.ok()) << q.status();
    const std::vector<int32_t> codes(q->codes.begin(), q->codes.end());
    // Signed b-bit two's complement: the stored code itself.
    auto stream = PackBitstream(codes, bits, Signedness::kSigned);
    auto words = PackWords(codes, bits, Signedness::kSigned);
    ASSERT_TRUE(stream.ok() && words.ok());
    EXPECT_EQ(static_cast<int64_t>(stream->size()), (count * bits + 7) / 8);
    auto from_stream = UnpackBitstream(*stream, count, bits, Signedness::kSigned);
    auto from_words = UnpackWords(*words, count, bits, Signedness::kSigned);
    ASSERT_TRUE(from_stream.ok() && from_words.ok());
    EXPECT_EQ(*from_stream, codes);
    EXPECT_EQ(*from_words, codes);
    // Unsigned storage u = code + 2^(b-1) in [0, 2^b - 1]: the odd operand is 2u - (2^b - 1).
    std::vector<int32_t> unsigned_codes(codes);
    for (int32_t& u : unsigned_codes) u += 1 << (bits - 1);
    auto packed = PackBitstream(unsigned_codes, bits, Signedness::kUnsigned);
    ASSERT_TRUE(packed.ok()) << packed.status();
    auto unpacked = UnpackBitstream(*packed, count, bits, Signedness::kUnsigned);
    ASSERT_TRUE(unpacked.ok());
    for (int64_t i = 0; i < count; ++i) {
      EXPECT_EQ(2 * (*unpacked)[i] - ((1 << bits) - 1), q->Centered(0, i)) << i;
    }
  }
}

TEST_F(BalancedCodesTest, GemmMatchesIntegerAndFloat64References) {
  for (int bits : {2, 3}) {
    const int64_t m = UniformInt(1, 6), n = UniformInt(1, 12), group = 32,
                  k = group * UniformInt(1, 6);
    auto x = QuantizeRtn(Gaussian(m * k, UniformFloat(0.1f, 3.0f)), m, k, {.bits = 8});
    auto w = QuantizeRtn(Gaussian(n * k, UniformFloat(0.01f, 1.0f)), n, k, Balanced(bits, group));
    ASSERT_TRUE(x.ok() && w.ok());
    auto result = QuantizedGemm(*x, *w);
    ASSERT_TRUE(result.ok()) << result.status();
    const int64_t groups = k / group;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double value = 0.0, magnitude = 0.0;
        for (int64_t g = 0; g < groups; ++g) {
          int64_t exact = 0;  // from the raw codes: x code times the odd weight level 2c + 1
          for (int64_t c = g * group; c < (g + 1) * group; ++c) {
            const int64_t odd = 2 * int64_t{w->codes[j * k + c]} + 1;
            exact += int64_t{x->codes[i * k + c]} * odd;
            const double term = double{HalfToFloat(x->scales[i])} * x->codes[i * k + c] *
                                HalfToFloat(w->scales[j * groups + g]) * odd;
            value += term;
            magnitude += std::fabs(term);
          }
          EXPECT_EQ(result->group_accumulators[(i * n + j) * groups + g], exact);
        }
        EXPECT_NEAR(result->output[i * n + j], value,
                    (groups + 3) * std::ldexp(1.0, -24) * magnitude);
      }
    }
  }
}

TEST(BalancedCodesErrors, AsymmetricBalancedIsRejected) {
  QuantFormat format{.bits = 2, .symmetric = false, .group_size = 0, .balanced = true};
  EXPECT_FALSE(QuantizeRtn(std::vector<float>{0.5f, -1.0f}, 1, 2, format).ok());
  auto spec = ParseQuantSpec(
      R"({"method": "abq_llm", "weight": {"bits": 2, "symmetric": false, "balanced": true}})");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("weight.balanced"), std::string::npos);
  auto good = ParseQuantSpec(
      R"({"method": "abq_llm", "weight": {"bits": 2, "symmetric": true, "balanced": true}})");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE(good->weight.balanced);
  auto round_trip = QuantSpecFromJson(QuantSpecToJson(*good));
  ASSERT_TRUE(round_trip.ok());
  EXPECT_EQ(*round_trip, *good);
}

}  // namespace
}  // namespace flatfleet::quant
