// The clip search picks, per group, the ratio whose RTN error is smallest among the candidates,
// and quantizes that group exactly as QuantizeRtn does with that ratio.
#include "quant/weight_clip_search.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class WeightClipSearchTest : public test_util::RandomTest {};

double GroupError(const std::vector<float>& values, const QuantizedMatrix& q) {
  const std::vector<float> dq = q.Dequantize();
  double sum = 0.0;
  for (size_t i = 0; i < values.size(); ++i) sum += (values[i] - dq[i]) * (values[i] - dq[i]);
  return sum;
}

TEST_F(WeightClipSearchTest, EachGroupIsTheBestCandidate) {
  for (int bits : {2, 3, 4}) {
    for (bool symmetric : {false, true}) {
      const int64_t rows = UniformInt(2, 6), group = 32, cols = group * UniformInt(1, 4);
      // Heavy-tailed weights so that clipping pays off.
      std::vector<float> w = Gaussian(rows * cols, 0.02f);
      for (float& v : w) v = v * v * v * 1e3f;
      QuantFormat format{bits, symmetric, group, 1.0f};
      ClipSearchOptions options;
      auto result = QuantizeRtnWithClipSearch(w, rows, cols, format, options);
      ASSERT_TRUE(result.ok()) << result.status();
      double searched_total = 0.0, unclipped_total = 0.0;
      const int64_t groups = cols / group;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
          std::vector<float> values(w.begin() + r * cols + g * group,
                                    w.begin() + r * cols + (g + 1) * group);
          QuantFormat one = format;
          one.group_size = 0;
          one.clip_ratio = result->clip_ratios[r * groups + g];
          auto chosen = QuantizeRtn(values, 1, group, one);
          ASSERT_TRUE(chosen.ok());
          // Same codes, scale and zero point as the assembled matrix.
          for (int64_t i = 0; i < group; ++i) {
            ASSERT_EQ(chosen->codes[i], result->matrix.codes[r * cols + g * group + i]);
          }
          ASSERT_EQ(chosen->scales[0], result->matrix.scales[r * groups + g]);
          if (!symmetric) {
            ASSERT_EQ(chosen->zero_points[0], result->matrix.zero_points[r * groups + g]);
          }
          const double chosen_error = GroupError(values, *chosen);
          searched_total += chosen_error;
          // No candidate on the grid does better.
          for (int step = 0; 1.0f - step * options.step >= options.min_ratio - 1e-6f; ++step) {
            one.clip_ratio = 1.0f - step * options.step;
            auto candidate = QuantizeRtn(values, 1, group, one);
            ASSERT_TRUE(candidate.ok());
            const double error = GroupError(values, *candidate);
            EXPECT_LE(chosen_error, error) << "ratio " << one.clip_ratio;
            if (step == 0) unclipped_total += error;
          }
        }
      }
      EXPECT_LE(searched_total, unclipped_total);
    }
  }
}

TEST_F(WeightClipSearchTest, RejectsBadShapes) {
  const std::vector<float> w = Gaussian(30);
  EXPECT_FALSE(QuantizeRtnWithClipSearch(w, 3, 10, QuantFormat{3, false, 4, 1.0f}).ok());
  EXPECT_FALSE(QuantizeRtnWithClipSearch(w, 3, 11, QuantFormat{3, false, 0, 1.0f}).ok());
}

}  // namespace
}  // namespace flatfleet::quant
