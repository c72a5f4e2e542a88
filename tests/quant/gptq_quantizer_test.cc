// GPTQ (quant/gptq_quantizer.h) against RTN and against a direct float64 implementation of the
// OBQ update it is derived from.
#include "quant/gptq_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class GptqTest : public test_util::RandomTest {
 protected:
  // `samples` rows of correlated inputs: x = z A + c * shared, with a few loud channels.
  std::vector<float> CorrelatedInputs(int64_t samples, int64_t cols,
                                      const std::vector<float>& mixing) {
    const std::vector<float> z = Gaussian(samples * cols);
    std::vector<float> x(samples * cols, 0.0f);
    for (int64_t s = 0; s < samples; ++s) {
      for (int64_t i = 0; i < cols; ++i) {
        double sum = 0.0;
        for (int64_t p = 0; p < cols; ++p) sum += double{z[s * cols + p]} * mixing[p * cols + i];
        x[s * cols + i] = static_cast<float>(sum);
      }
      x[s * cols + 1] *= 5.0f;
    }
    return x;
  }
  std::vector<float> Mixing(int64_t cols) {
    std::vector<float> mixing = Gaussian(cols * cols, 0.3f);
    for (int64_t i = 0; i < cols; ++i) mixing[i * cols + i] += 1.0f;
    // A common component: every channel correlated with channel 0.
    for (int64_t i = 0; i < cols; ++i) mixing[i] += 0.8f;
    return mixing;
  }
  static std::vector<double> Gram(const std::vector<float>& x, int64_t samples, int64_t cols) {
    std::vector<double> h(cols * cols, 0.0);
    for (int64_t s = 0; s < samples; ++s)
      for (int64_t i = 0; i < cols; ++i)
        for (int64_t j = 0; j < cols; ++j)
          h[i * cols + j] += double{x[s * cols + i]} * x[s * cols + j];
    return h;
  }
};

// The OBQ form, directly in float64: keep the full inverse Hessian of the remaining columns,
// quantize one column, move its error onto the others with H^-1, remove it from H^-1.
QuantizedMatrix DirectGptq(const std::vector<float>& weight, int64_t rows, int64_t cols,
                           std::vector<double> h, const QuantFormat& format, double damp) {
  double mean = 0.0;
  for (int64_t i = 0; i < cols; ++i) mean += h[i * cols + i];
  mean /= cols;
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] += damp * mean;
  // Gauss-Jordan inverse.
  std::vector<double> a = h, inv(cols * cols, 0.0);
  for (int64_t i = 0; i < cols; ++i) inv[i * cols + i] = 1.0;
  for (int64_t c = 0; c < cols; ++c) {
    int64_t pivot = c;
    for (int64_t r = c + 1; r < cols; ++r)
      if (std::fabs(a[r * cols + c]) > std::fabs(a[pivot * cols + c])) pivot = r;
    for (int64_t j = 0; j < cols; ++j) {
      std::swap(a[c * cols + j], a[pivot * cols + j]);
      std::swap(inv[c * cols + j], inv[pivot * cols + j]);
    }
    const double d = a[c * cols + c];
    for (int64_t j = 0; j < cols; ++j) {
      a[c * cols + j] /= d;
      inv[c * cols + j] /= d;
    }
    for (int64_t r = 0; r < cols; ++r) {
      if (r == c) continue;
      const double f = a[r * cols + c];
      for (int64_t j = 0; j < cols; ++j) {
        a[r * cols + j] -= f * a[c * cols + j];
        inv[r * cols + j] -= f * inv[c * cols + j];
      }
    }
  }
  const int64_t group = format.group_size == 0 ? cols : format.group_size;
  std::vector<double> w(weight.begin(), weight.end());
  QuantizedMatrix out;
  out.rows = rows;
  out.cols = cols;
  out.format = format;
  out.codes.resize(rows * cols);
  out.scales.resize(rows * (cols / group));
  if (!format.symmetric) out.zero_points.resize(out.scales.size());
  QuantizedMatrix params;
  for (int64_t p = 0; p < cols; ++p) {
    if (p % group == 0) {  // the group's parameters from its current values, as RTN computes them
      std::vector<float> values(rows * group);
      const std::vector<float>& source = format.group_size == 0 ? weight : std::vector<float>();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < group; ++c)
          values[r * group + c] = format.group_size == 0 ? source[r * cols + c]
                                                         : static_cast<float>(w[r * cols + p + c]);
      QuantFormat one = format;
      one.group_size = 0;
      params = *QuantizeRtn(values, rows, group, one);
      for (int64_t r = 0; r < rows; ++r) {
        out.scales[r * (cols / group) + p / group] = params.scales[r];
        if (!format.symmetric)
          out.zero_points[r * (cols / group) + p / group] = params.zero_points[r];
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float s = params.Scale(r, 0);
      const int32_t z = params.ZeroPoint(r, 0);
      const int32_t code = std::clamp(
          static_cast<int32_t>(std::nearbyint(static_cast<float>(w[r * cols + p]) / s)) + z,
          MinCode(format), MaxCode(format));
      out.codes[r * cols + p] = static_cast<int8_t>(code);
      const double e = (w[r * cols + p] - double{s} * (code - z)) / inv[p * cols + p];
      for (int64_t j = p + 1; j < cols; ++j) w[r * cols + j] -= e * inv[p * cols + j];
    }
    // Remove column p from the inverse of the remaining columns.
    const double d = inv[p * cols + p];
    for (int64_t i = p + 1; i < cols; ++i)
      for (int64_t j = p + 1; j < cols; ++j)
        inv[i * cols + j] -= inv[i * cols + p] * inv[p * cols + j] / d;
  }
  return out;
}

double FractionEqual(const std::vector<int8_t>& a, const std::vector<int8_t>& b) {
  int64_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / a.size();
}

// sum over samples of ||x (W - What)^T||^2 on explicit inputs.
double OutputError(const std::vector<float>& x, int64_t samples, const std::vector<float>& w,
                   const std::vector<float>& what, int64_t rows, int64_t cols) {
  double total = 0.0;
  for (int64_t s = 0; s < samples; ++s)
    for (int64_t r = 0; r < rows; ++r) {
      double d = 0.0;
      for (int64_t c = 0; c < cols; ++c)
        d += double{x[s * cols + c]} * (double{w[r * cols + c]} - what[r * cols + c]);
      total += d * d;
    }
  return total;
}

TEST_F(GptqTest, DiagonalHessianIsExactlyRtn) {
  const int64_t rows = UniformInt(3, 12), cols = 48;
  const std::vector<float> w = Gaussian(rows * cols);
  std::vector<double> h(cols * cols, 0.0);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] = UniformFloat(0.1f, 10.0f);
  for (int bits : {3, 4, 8}) {
    for (bool symmetric : {true, false}) {
      for (int64_t group : {int64_t{0}, int64_t{16}}) {
        for (bool act_order : {false, true}) {
          SCOPED_TRACE(testing::Message() << bits << " bits, symmetric " << symmetric << ", group "
                                          << group << ", act_order " << act_order);
          const QuantFormat format{.bits = bits, .symmetric = symmetric, .group_size = group};
          GptqOptions options;
          options.act_order = act_order;
          options.block_size = UniformInt(1, 64);
          auto gptq = QuantizeGptq(w, rows, cols, h, format, options);
          ASSERT_TRUE(gptq.ok()) << gptq.status();
          auto rtn = QuantizeRtn(w, rows, cols, format);
          ASSERT_TRUE(rtn.ok());
          EXPECT_EQ(gptq->codes, rtn->codes);
          EXPECT_EQ(gptq->scales, rtn->scales);
          EXPECT_EQ(gptq->zero_points, rtn->zero_points);
        }
      }
    }
  }
}

TEST_F(GptqTest, MatchesTheDirectFloat64Implementation) {
  const int64_t rows = 6, cols = 24, samples = 60;
  const std::vector<float> x = CorrelatedInputs(samples, cols, Mixing(cols));
  const std::vector<double> h = Gram(x, samples, cols);
  const std::vector<float> w = Gaussian(rows * cols);
  for (int64_t group : {int64_t{0}, int64_t{8}}) {
    for (bool symmetric : {true, false}) {
      SCOPED_TRACE(testing::Message() << "group " << group << ", symmetric " << symmetric);
      const QuantFormat format{.bits = 3, .symmetric = symmetric, .group_size = group};
      const QuantizedMatrix direct = DirectGptq(w, rows, cols, h, format, 0.01);
      for (int64_t block : {int64_t{1}, int64_t{5}, int64_t{128}}) {
        GptqOptions options;
        options.block_size = block;
        auto gptq = QuantizeGptq(w, rows, cols, h, format, options);
        ASSERT_TRUE(gptq.ok()) << gptq.status();
        // Same algorithm, different float64 summation order: codes agree unless a value lands
        // within ~1e-12 of a rounding boundary.
        EXPECT_GE(FractionEqual(gptq->codes, direct.codes), 0.99) << "block " << block;
        const double e1 = OutputErrorWithHessian(w, gptq->Dequantize(), rows, cols, h);
        const double e2 = OutputErrorWithHessian(w, direct.Dequantize(), rows, cols, h);
        EXPECT_NEAR(e1, e2, 0.02 * e2) << "block " << block;
      }
    }
  }
}

// A margin on random data, so a fixed seed: over 100 fresh seeds gptq_fit / rtn_fit was 0.309 to
// 0.506 (median 0.39) for every bit width and order, against the bound 0.8.
TEST_F(GptqTest, BeatsRtnOnCorrelatedInputs) {
  UseFixedSeed(7919);
  const int64_t rows = 32, cols = 64, samples = 512;
  const std::vector<float> mixing = Mixing(cols);
  const std::vector<float> calibration = CorrelatedInputs(samples, cols, mixing);
  const std::vector<float> held_out = CorrelatedInputs(samples, cols, mixing);
  const std::vector<double> h = Gram(calibration, samples, cols);
  const std::vector<float> w = Gaussian(rows * cols, 0.05f);
  for (int bits : {3, 4}) {
    for (bool act_order : {false, true}) {
      SCOPED_TRACE(testing::Message() << bits << " bits, act_order " << act_order);
      const QuantFormat format{.bits = bits, .symmetric = bits == 4, .group_size = 16};
      GptqOptions options;
      options.act_order = act_order;
      options.block_size = 16;
      auto gptq = QuantizeGptq(w, rows, cols, h, format, options);
      auto rtn = QuantizeRtn(w, rows, cols, format);
      ASSERT_TRUE(gptq.ok() && rtn.ok());
      ASSERT_TRUE(gptq->Validate().ok());
      const double gptq_fit = OutputErrorWithHessian(w, gptq->Dequantize(), rows, cols, h);
      const double rtn_fit = OutputErrorWithHessian(w, rtn->Dequantize(), rows, cols, h);
      EXPECT_NEAR(gptq_fit, OutputError(calibration, samples, w, gptq->Dequantize(), rows, cols),
                  1e-6 * gptq_fit);
      std::printf("[ ratio    ] %d %d %.4f\n", bits, act_order ? 1 : 0, gptq_fit / rtn_fit);
      EXPECT_LT(gptq_fit, 0.8 * rtn_fit);
      // And on fresh inputs from the same distribution (not what GPTQ was fitted on).
      EXPECT_LT(OutputError(held_out, samples, w, gptq->Dequantize(), rows, cols),
                OutputError(held_out, samples, w, rtn->Dequantize(), rows, cols));
    }
  }
}

TEST_F(GptqTest, BadInputsAreErrors) {
  const int64_t rows = 4, cols = 8;
  const std::vector<float> w = Gaussian(rows * cols);
  const QuantFormat format{.bits = 4, .symmetric = true, .group_size = 0};
  std::vector<double> h(cols * cols, 0.0);
  EXPECT_FALSE(QuantizeGptq(w, rows, cols, std::vector<double>(10, 1.0), format).ok());
  EXPECT_FALSE(QuantizeGptq(w, rows, cols + 1, h, format).ok());
  const QuantFormat bad_group{.bits = 4, .symmetric = true, .group_size = 3};
  EXPECT_FALSE(QuantizeGptq(w, rows, cols, h, bad_group).ok());
  // Rank 2 without dampening is singular.
  const std::vector<float> x = Gaussian(2 * cols);
  const std::vector<double> low_rank = Gram(x, 2, cols);
  GptqOptions no_damp;
  no_damp.damp = 0.0;
  auto singular = QuantizeGptq(w, rows, cols, low_rank, format, no_damp);
  EXPECT_TRUE(absl::IsFailedPrecondition(singular.status())) << singular.status();
  // With the default dampening it works, and an all-zero input channel is ignored.
  std::vector<double> dead = low_rank;
  for (int64_t j = 0; j < cols; ++j) dead[2 * cols + j] = dead[j * cols + 2] = 0.0;
  EXPECT_TRUE(QuantizeGptq(w, rows, cols, dead, format).ok());
}

}  // namespace
}  // namespace flatfleet::quant
