// ActivationCalibration's raw statistics: channel maxima, the bounded reservoir sample and the
// Gram matrix.
#include "quant/activation_calibration.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "gtest/gtest.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class RawCalibrationStatisticsTest : public test_util::RandomTest {};

TEST_F(RawCalibrationStatisticsTest, KeepsEveryRowWhileWithinTheBound) {
  const int64_t cols = UniformInt(3, 20);
  CalibrationOptions options;
  options.max_raw_samples = 64;
  options.record_gram = true;
  ActivationCalibration calibration;
  std::vector<float> all;
  for (int batch = 0; batch < 4; ++batch) {
    const int64_t rows = UniformInt(1, 16);
    const std::vector<float> x = Gaussian(rows * cols);
    calibration.Record(x, rows, cols);
    calibration.RecordRaw(x, rows, cols, options);
    all.insert(all.end(), x.begin(), x.end());
  }
  const int64_t total = static_cast<int64_t>(all.size()) / cols;
  EXPECT_EQ(calibration.rows_seen, total);
  EXPECT_EQ(calibration.raw_rows_seen, total);
  EXPECT_EQ(calibration.raw_sample_rows(cols), total);
  EXPECT_EQ(calibration.raw_samples, all);
  for (int64_t c = 0; c < cols; ++c) {
    float max_abs = 0.0f;
    for (int64_t r = 0; r < total; ++r) max_abs = std::max(max_abs, std::fabs(all[r * cols + c]));
    EXPECT_EQ(calibration.raw_channel_absmax[c], max_abs);
    EXPECT_EQ(calibration.channel_absmax[c], max_abs);
  }
  ASSERT_EQ(static_cast<int64_t>(calibration.raw_gram.size()), cols * cols);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double sum = 0.0;
      for (int64_t r = 0; r < total; ++r) sum += double{all[r * cols + i]} * all[r * cols + j];
      EXPECT_NEAR(calibration.raw_gram[i * cols + j], sum, 1e-9 * (1 + std::fabs(sum)));
    }
  }
}

TEST_F(RawCalibrationStatisticsTest, ReservoirIsBoundedAndHoldsInputRows) {
  const int64_t cols = 4, bound = UniformInt(5, 20);
  CalibrationOptions options;
  options.max_raw_samples = bound;
  ActivationCalibration calibration;
  std::set<std::vector<float>> seen;
  for (int batch = 0; batch < 10; ++batch) {
    const std::vector<float> x = Gaussian(7 * cols);
    calibration.RecordRaw(x, 7, cols, options);
    for (int64_t r = 0; r < 7; ++r) seen.insert({x.begin() + r * cols, x.begin() + (r + 1) * cols});
  }
  EXPECT_EQ(calibration.raw_rows_seen, 70);
  EXPECT_EQ(calibration.raw_sample_rows(cols), bound);
  ASSERT_EQ(static_cast<int64_t>(calibration.raw_samples.size()), bound * cols);
  std::set<std::vector<float>> kept;
  for (int64_t r = 0; r < bound; ++r) {
    std::vector<float> row(calibration.raw_samples.begin() + r * cols,
                           calibration.raw_samples.begin() + (r + 1) * cols);
    EXPECT_TRUE(seen.count(row)) << "row " << r << " is not an input row";
    kept.insert(row);
  }
  EXPECT_EQ(static_cast<int64_t>(kept.size()), bound);  // distinct rows, none duplicated
  EXPECT_TRUE(calibration.raw_gram.empty());            // not asked for
}

}  // namespace
}  // namespace flatfleet::quant
