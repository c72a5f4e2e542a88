#include "kernels/cpu/quant/rtn_quantizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class RtnQuantizerTest : public test_util::RandomTest {};

// Allowance for float32 rounding in x / s and s * (code - zero): far below a quantization step.
constexpr double kRelativeSlack = 1e-5;

void ExpectErrorWithinHalfStep(const std::vector<float>& values, const QuantizedMatrix& q) {
  const std::vector<float> dequantized = q.Dequantize();
  int64_t violations = 0;
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t c = 0; c < q.cols; ++c) {
      const double scale = q.Scale(r, c / q.GroupSize());
      const double error = std::fabs(double{values[r * q.cols + c]} - dequantized[r * q.cols + c]);
      if (error > scale / 2 * (1 + kRelativeSlack)) ++violations;
    }
  }
  EXPECT_EQ(violations, 0);
}

TEST_F(RtnQuantizerTest, ErrorIsAtMostHalfAStepForEveryFormat) {
  for (int bits = 2; bits <= 8; ++bits) {
    for (bool symmetric : {true, false}) {
      for (int64_t group_size : {0, 32, 128}) {
        SCOPED_TRACE(::testing::Message()
                     << bits << " bits, symmetric " << symmetric << ", group " << group_size);
        const int64_t rows = UniformInt(1, 6), cols = 256;
        // A shifted distribution so asymmetric ranges are genuinely lopsided.
        std::vector<float> values = Gaussian(rows * cols, UniformFloat(0.01f, 3.0f));
        const float shift = UniformFloat(-1.0f, 1.0f);
        for (float& v : values) v += shift;
        const QuantFormat format{.bits = bits, .symmetric = symmetric, .group_size = group_size};
        auto q = QuantizeRtn(values, rows, cols, format);
        ASSERT_TRUE(q.ok()) << q.status();
        ASSERT_EQ(q->GroupsPerRow(), group_size == 0 ? 1 : cols / group_size);
        for (int8_t code : q->codes) {
          ASSERT_GE(code, MinCode(format));
          ASSERT_LE(code, MaxCode(format));
        }
        for (int8_t zero : q->zero_points) {
          ASSERT_GE(zero, MinCode(format));
          ASSERT_LE(zero, MaxCode(format));
        }
        ExpectErrorWithinHalfStep(values, *q);
        // The scale is not wastefully large: the extremes reach the end of the code range.
        const auto [lo, hi] = std::minmax_element(q->codes.begin(), q->codes.end());
        EXPECT_TRUE(*hi == MaxCode(format) || *lo == MinCode(format));
      }
    }
  }
}

TEST_F(RtnQuantizerTest, StoredFp16ScaleIsTheOneUsed) {
  const int64_t rows = 3, cols = 128;
  std::vector<float> values = Gaussian(rows * cols);
  auto q = QuantizeRtn(values, rows, cols, {.bits = 4, .symmetric = true, .group_size = 64});
  ASSERT_TRUE(q.ok());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float scale = HalfToFloat(q->scales[r * 2 + c / 64]);
      const int32_t expected =
          std::clamp(static_cast<int32_t>(std::nearbyint(values[r * cols + c] / scale)), -7, 7);
      ASSERT_EQ(q->codes[r * cols + c], expected);
    }
  }
}

TEST_F(RtnQuantizerTest, ScaleRoundsUpToFp16) {
  for (int i = 0; i < 1000; ++i) {
    const float scale = std::exp(UniformFloat(-15.0f, 10.0f));
    auto half = ScaleToHalfRoundingUp(scale);
    ASSERT_TRUE(half.ok());
    EXPECT_GE(HalfToFloat(*half), scale);
    if (*half > 1) {
      EXPECT_LT(HalfToFloat(*half - 1), scale);  // it is the smallest such value
    }
  }
  EXPECT_FALSE(ScaleToHalfRoundingUp(70000.0f).ok());
  EXPECT_FALSE(ScaleToHalfRoundingUp(0.0f).ok());
}

TEST_F(RtnQuantizerTest, ClippingSaturatesOnlyTheTail) {
  const int64_t rows = 2, cols = 512;
  std::vector<float> values = Gaussian(rows * cols);
  const float clip = 0.8f;
  auto q = QuantizeRtn(values, rows, cols, {.bits = 4, .symmetric = true, .clip_ratio = clip});
  ASSERT_TRUE(q.ok());
  const std::vector<float> dequantized = q->Dequantize();
  for (int64_t r = 0; r < rows; ++r) {
    float max_abs = 0.0f;
    for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(values[r * cols + c]));
    const double scale = q->Scale(r, 0);
    for (int64_t c = 0; c < cols; ++c) {
      const float x = values[r * cols + c];
      if (std::fabs(x) <= 7 * scale) {
        EXPECT_LE(std::fabs(x - dequantized[r * cols + c]), scale / 2 * (1 + kRelativeSlack));
      } else {
        EXPECT_EQ(std::abs(q->codes[r * cols + c]), 7);  // saturated
      }
    }
    EXPECT_LT(7 * scale, max_abs);  // clipping did shrink the range
  }
}

TEST_F(RtnQuantizerTest, PerTokenActivationsInt8AndInt4) {
  for (int bits : {8, 4}) {
    const int64_t tokens = 5, hidden = 384;
    std::vector<float> values = Gaussian(tokens * hidden, 2.0f);
    values[UniformInt(0, tokens * hidden - 1)] = 60.0f;  // an activation outlier
    auto q = QuantizeRtn(values, tokens, hidden, {.bits = bits, .symmetric = true});
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->scales.size(), static_cast<size_t>(tokens));
    ExpectErrorWithinHalfStep(values, *q);
  }
}

TEST_F(RtnQuantizerTest, PerTensorStaticScaleAppliesEverywhereAndSaturates) {
  const int64_t rows = 4, cols = 64;
  std::vector<float> calibration = Gaussian(rows * cols);
  auto scale = CalibratePerTensorScale(calibration, 8, 1.0f);
  ASSERT_TRUE(scale.ok());
  std::vector<float> values = Gaussian(rows * cols);
  values[3] = 1000.0f;  // beyond any calibrated range
  auto q = QuantizeWithStaticScale(values, rows, cols, 8, *scale);
  ASSERT_TRUE(q.ok());
  for (uint16_t s : q->scales) EXPECT_EQ(s, *scale);
  EXPECT_EQ(q->codes[3], 127);
  const double step = HalfToFloat(*scale);
  const std::vector<float> dequantized = q->Dequantize();
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (std::fabs(values[i]) <= 127 * step) {
      EXPECT_LE(std::fabs(values[i] - dequantized[i]), step / 2 * (1 + kRelativeSlack));
    }
  }
}

TEST(RtnQuantizerErrors, RejectsBadFormats) {
  const std::vector<float> values(12, 1.0f);
  EXPECT_FALSE(QuantizeRtn(values, 2, 6, {.bits = 4, .group_size = 4}).ok());
  EXPECT_FALSE(QuantizeRtn(values, 2, 6, {.bits = 9}).ok());
  EXPECT_FALSE(QuantizeRtn(values, 2, 6, {.bits = 4, .clip_ratio = 0.0f}).ok());
  EXPECT_FALSE(QuantizeRtn(values, 3, 6, {.bits = 4}).ok());
}

}  // namespace
}  // namespace flatfleet::quant

namespace flatfleet::quant {
namespace {

// Rows are quantized in parallel: the result equals quantizing each row alone, and a bad input
// is reported at the first bad row whatever order the threads ran in.
TEST_F(RtnQuantizerTest, ParallelRowsEqualRowsAloneAndTheFirstBadRowIsReported) {
  const int64_t rows = UniformInt(300, 600), cols = 64 * UniformInt(1, 4);
  const QuantFormat format{.bits = 4, .symmetric = false, .group_size = 32};
  std::vector<float> values = Gaussian(rows * cols);
  auto all = QuantizeRtn(values, rows, cols, format);
  ASSERT_TRUE(all.ok()) << all.status();
  for (int64_t r = 0; r < rows; r += UniformInt(1, 40)) {
    auto alone =
        QuantizeRtn(std::span<const float>(values).subspan(r * cols, cols), 1, cols, format);
    ASSERT_TRUE(alone.ok()) << alone.status();
    ASSERT_TRUE(std::equal(alone->codes.begin(), alone->codes.end(), all->codes.begin() + r * cols))
        << r;
    ASSERT_TRUE(std::equal(alone->scales.begin(), alone->scales.end(),
                           all->scales.begin() + r * (cols / 32)))
        << r;
    ASSERT_TRUE(std::equal(alone->zero_points.begin(), alone->zero_points.end(),
                           all->zero_points.begin() + r * (cols / 32)))
        << r;
  }
  const int64_t first_bad = UniformInt(0, rows / 2);
  values[first_bad * cols + 3] = std::nanf("");
  values[(rows - 1) * cols + 5] = INFINITY;  // a later bad row, likely another thread's chunk
  auto bad = QuantizeRtn(values, rows, cols, format);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(absl::StrCat("at row ", first_bad, ", column 3")),
            std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace flatfleet::quant
