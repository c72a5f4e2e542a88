#include "worker/collectives/int8_blocks.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/collectives/collectives_test_support.h"
#include "worker/collectives/compressed_all_reduce_reference.h"

namespace flatfleet::collectives {
namespace {

using testing::FreshSeed;
using testing::RandomActivations;

TEST(Int8BlocksTest, RoundTripErrorIsAtMostHalfAScale) {
  std::mt19937 rng(FreshSeed());
  for (int block_size : {1, 3, 128, 256}) {
    for (int64_t n : {1, 2, 127, 129, 1000, 4099}) {
      const std::vector<float> values = RandomActivations(n, rng);
      std::vector<int8_t> codes(n);
      std::vector<float> scales(NumBlocks(n, block_size));
      ASSERT_TRUE(
          QuantizeBlocks(values, block_size, absl::MakeSpan(codes), absl::MakeSpan(scales)).ok());
      std::vector<float> restored(n);
      DequantizeBlocks(codes, scales, block_size, absl::MakeSpan(restored));
      for (int64_t i = 0; i < n; ++i) {
        const float scale = scales[i / block_size];
        ASSERT_GT(scale, 0.0f);
        ASSERT_GE(codes[i], -127);
        ASSERT_LE(std::fabs(restored[i] - values[i]), scale * (0.5f + 1e-5f))
            << "block_size=" << block_size << " n=" << n << " i=" << i;
      }
      // The largest magnitude of each block lands on the extreme code.
      for (size_t b = 0; b < scales.size(); ++b) {
        int max_code = 0;
        for (int64_t i = b * block_size; i < std::min<int64_t>((b + 1) * block_size, n); ++i) {
          max_code = std::max(max_code, std::abs(static_cast<int>(codes[i])));
        }
        ASSERT_EQ(max_code, 127) << "block " << b;
      }
    }
  }
}

TEST(Int8BlocksTest, HandComputedBlock) {
  const std::vector<float> values = {2.54f, -1.27f, 0.02f, 0.0f, -3.0f};
  std::vector<int8_t> codes(5);
  std::vector<float> scales(2);
  ASSERT_TRUE(QuantizeBlocks(values, 4, absl::MakeSpan(codes), absl::MakeSpan(scales)).ok());
  EXPECT_FLOAT_EQ(scales[0], 2.54f / 127.0f);
  EXPECT_EQ(codes[0], 127);
  EXPECT_EQ(codes[1], -64);  // -63.5 -> ties to even
  EXPECT_EQ(codes[2], 1);
  EXPECT_EQ(codes[3], 0);
  EXPECT_FLOAT_EQ(scales[1], 3.0f / 127.0f);
  EXPECT_EQ(codes[4], -127);
}

TEST(Int8BlocksTest, ZeroBlockHasZeroScale) {
  const std::vector<float> values = {0.0f, 0.0f, 5.0f};
  std::vector<int8_t> codes(3, 9);
  std::vector<float> scales(2, 9.0f);
  ASSERT_TRUE(QuantizeBlocks(values, 2, absl::MakeSpan(codes), absl::MakeSpan(scales)).ok());
  EXPECT_EQ(scales[0], 0.0f);
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 0);
  EXPECT_EQ(codes[2], 127);
}

TEST(Int8BlocksTest, RejectsNonFiniteValuesAndBadSizes) {
  std::vector<int8_t> codes(2);
  std::vector<float> scales(1);
  const std::vector<float> with_nan = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(QuantizeBlocks(with_nan, 2, absl::MakeSpan(codes), absl::MakeSpan(scales)).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<float> with_inf = {std::numeric_limits<float>::infinity(), 1.0f};
  EXPECT_EQ(QuantizeBlocks(with_inf, 2, absl::MakeSpan(codes), absl::MakeSpan(scales)).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<float> three = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(QuantizeBlocks(three, 2, absl::MakeSpan(codes), absl::MakeSpan(scales)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CompressedAllReduceReferenceTest, StaysWithinAnalyticBound) {
  std::mt19937 rng(FreshSeed());
  double worst_ratio = 0.0;
  for (int ranks : {1, 2, 3, 4, 8}) {
    for (int block_size : {128, 256}) {
      const int64_t n = 3 * block_size + 17;
      std::vector<std::vector<float>> inputs;
      for (int r = 0; r < ranks; ++r) inputs.push_back(RandomActivations(n, rng));
      auto trace = CompressedAllReduceReference(inputs, block_size);
      ASSERT_TRUE(trace.ok()) << trace.status();
      ASSERT_EQ(trace->output.size(), n);
      for (int64_t i = 0; i < n; ++i) {
        double exact = 0.0, magnitude = 0.0;
        for (const auto& input : inputs) {
          exact += input[i];
          magnitude += std::fabs(input[i]);
        }
        const double bound = CompressedAllReduceErrorBound(*trace, block_size, i);
        const double error = std::fabs(trace->output[i] - exact);
        // Float rounding of the dequantize/accumulate steps is far below a scale.
        ASSERT_LE(error, bound + 4 * ranks * 1.2e-7 * magnitude) << "ranks=" << ranks << " i=" << i;
        worst_ratio = std::max(worst_ratio, error / bound);
      }
    }
  }
  std::printf("[ measured ] worst error / bound = %.3f\n", worst_ratio);
  EXPECT_GT(worst_ratio, 0.0);  // quantization does lose something
}

TEST(CompressedAllReduceReferenceTest, RejectsMismatchedRanks) {
  EXPECT_FALSE(CompressedAllReduceReference({{1.0f, 2.0f}, {1.0f}}, 128).ok());
  EXPECT_FALSE(CompressedAllReduceReference({}, 128).ok());
}

}  // namespace
}  // namespace flatfleet::collectives
