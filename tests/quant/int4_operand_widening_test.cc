// 2- and 3-bit weights as INT4 operands (kernels/cpu/quant/int4_operand_widening.h): every operand,
// every dequantized value and every integer GEMM sum and output of the widened matrix must be the
// original's bit for bit (tolerance 0: the GPU runs W2A8 / W3A8 on its W4A8 kernels through it).
#include "kernels/cpu/quant/int4_operand_widening.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class Int4OperandWideningTest : public test_util::RandomTest {};

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST_F(Int4OperandWideningTest, OperandsDequantizedValuesAndGemmOutputsAreTheOriginals) {
  struct Kind {
    bool symmetric, balanced;
  };
  for (int bits : {2, 3}) {
    for (Kind kind : {Kind{true, false}, Kind{false, false}, Kind{true, true}}) {
      for (int64_t group : {int64_t{0}, int64_t{128}, int64_t{32}}) {
        SCOPED_TRACE(::testing::Message() << bits << "-bit, symmetric " << kind.symmetric
                                          << ", balanced " << kind.balanced << ", group " << group);
        const int64_t rows = UniformInt(1, 9), cols = 128 * UniformInt(1, 3), m = UniformInt(1, 5);
        const QuantFormat format{.bits = bits,
                                 .symmetric = kind.symmetric,
                                 .group_size = group,
                                 .balanced = kind.balanced};
        auto weight = QuantizeRtn(Gaussian(rows * cols, 0.05f), rows, cols, format);
        ASSERT_TRUE(weight.ok()) << weight.status();
        ASSERT_TRUE(WidensToInt4Operands(weight->format));
        auto widened = WidenToInt4Operands(*weight);
        ASSERT_TRUE(widened.ok()) << widened.status();
        ASSERT_TRUE(widened->Validate().ok()) << widened->Validate();
        EXPECT_EQ(widened->format.bits, 4);
        EXPECT_FALSE(widened->format.balanced);
        EXPECT_EQ(widened->format.symmetric, kind.symmetric);
        EXPECT_EQ(widened->scales, weight->scales);
        EXPECT_EQ(widened->zero_points, weight->zero_points);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            ASSERT_EQ(widened->Centered(r, c), weight->Centered(r, c)) << r << ", " << c;
          }
        }
        EXPECT_TRUE(BitwiseEqual(widened->Dequantize(), weight->Dequantize()));

        auto activations = QuantizeRtn(Gaussian(m * cols), m, cols, {.bits = 8});
        ASSERT_TRUE(activations.ok()) << activations.status();
        auto original = QuantizedGemm(*activations, *weight);
        auto four_bit = QuantizedGemm(*activations, *widened);
        ASSERT_TRUE(original.ok()) << original.status();
        ASSERT_TRUE(four_bit.ok()) << four_bit.status();
        EXPECT_EQ(four_bit->group_accumulators, original->group_accumulators);
        EXPECT_TRUE(BitwiseEqual(four_bit->output, original->output));
        // ... and on the kernel's own entry point (GemmW4A8: INT8 x INT4, what the GPU matches).
        auto w4a8 = GemmW4A8(*activations, *widened);
        ASSERT_TRUE(w4a8.ok()) << w4a8.status();
        EXPECT_TRUE(BitwiseEqual(w4a8->output, original->output));
      }
    }
  }
}

TEST_F(Int4OperandWideningTest, RefusesWeightsThatDoNotFitOrAreInvalid) {
  const int64_t rows = 2, cols = 128;
  auto balanced4 = QuantizeRtn(Gaussian(rows * cols), rows, cols,
                               {.bits = 4, .symmetric = true, .group_size = 0, .balanced = true});
  ASSERT_TRUE(balanced4.ok()) << balanced4.status();
  EXPECT_FALSE(WidensToInt4Operands(balanced4->format));  // operands up to +-15
  EXPECT_EQ(WidenToInt4Operands(*balanced4).status().code(), absl::StatusCode::kInvalidArgument);
  auto eight = QuantizeRtn(Gaussian(rows * cols), rows, cols, {.bits = 8});
  ASSERT_TRUE(eight.ok()) << eight.status();
  EXPECT_EQ(WidenToInt4Operands(*eight).status().code(), absl::StatusCode::kInvalidArgument);
  auto three = QuantizeRtn(Gaussian(rows * cols), rows, cols, {.bits = 3, .symmetric = false});
  ASSERT_TRUE(three.ok()) << three.status();
  three->codes[5] = 7;  // outside the 3-bit range: the matrix is corrupt
  auto corrupt = WidenToInt4Operands(*three);
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(corrupt.status().message().find("INT4 operands"), std::string::npos)
      << corrupt.status();
}

}  // namespace
}  // namespace flatfleet::quant
