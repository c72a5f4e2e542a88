// Layers quantized from calibration statistics (quant/data_dependent_linear.h): SmoothQuant with
// its alpha search, FlattenQuant with per-tensor static scales, GPTQ's Hessian through the
// online transforms, and the errors without calibration.
#include "quant/data_dependent_linear.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/flatten_input_transform.h"
#include "quant/gptq_quantizer.h"
#include "quant/smooth_input_transform.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class DataDependentLinearTest : public test_util::RandomTest {
 protected:
  // Rows with the same few channels 30-100x larger (fixed per test), like LLM activations.
  std::vector<float> OutlierRows(int64_t m, int64_t k) {
    if (factors_.empty()) {
      // Three distinct channels: one drawn twice would be scaled by the product of its factors
      // (up to 1e4), more than any split budget can flatten.
      while (outliers_.size() < 3) {
        const int64_t channel = UniformInt(0, k - 1);
        if (std::find(outliers_.begin(), outliers_.end(), channel) != outliers_.end()) continue;
        outliers_.push_back(channel);
        factors_.push_back(UniformFloat(30.0f, 100.0f));
      }
    }
    std::vector<float> x = Gaussian(m * k);
    for (size_t i = 0; i < outliers_.size(); ++i)
      for (int64_t r = 0; r < m; ++r) x[r * k + outliers_[i]] *= factors_[i];
    return x;
  }
  ActivationCalibration Calibrate(const std::vector<float>& x, int64_t m, int64_t k,
                                  const QuantRecipe& recipe, const InputTransformChain& base) {
    ActivationCalibration calibration;
    calibration.Record(base.ApplyToActivations(x, m), m, base.OutFeatures(k));
    calibration.RecordRaw(x, m, k, CalibrationOptionsFor(recipe));
    return calibration;
  }
  QuantRecipe Recipe(const char* name) {
    auto recipe = RecipeByName(name);
    EXPECT_TRUE(recipe.ok()) << recipe.status();
    return *recipe;
  }
  absl::StatusOr<QuantizedLinear> Quantize(const QuantRecipe& recipe, const Tensor& weight,
                                           const std::vector<float>& calibration_rows,
                                           int64_t rows) {
    auto base = OnlineTransformsFor(recipe, weight.dim(1));
    if (!base.ok()) return base.status();
    const ActivationCalibration calibration =
        Calibrate(calibration_rows, rows, weight.dim(1), recipe, *base);
    return QuantizeDataDependentLinear(weight, nullptr, recipe, &calibration, *base);
  }

  std::vector<int64_t> outliers_;
  std::vector<float> factors_;
};

// A margin on random data, so a fixed seed: over 100 fresh seeds the error ratio was 0.038 to
// 0.098 (median 0.053) against the bound 0.5.
TEST_F(DataDependentLinearTest, SmoothQuantBeatsPlainW8A8OnOutlierActivations) {
  UseFixedSeed(7919);
  const int64_t n = 48, k = 128, rows = 256;
  const Tensor weight({n, k}, Gaussian(n * k, 0.05f));
  const std::vector<float> calibration = OutlierRows(rows, k);
  const std::vector<float> held_out = OutlierRows(64, k);
  auto plain = Quantize(Recipe("w8a8"), weight, calibration, rows);
  auto smooth = Quantize(Recipe("w8a8-smooth"), weight, calibration, rows);
  ASSERT_TRUE(plain.ok() && smooth.ok()) << plain.status() << smooth.status();
  ASSERT_EQ(smooth->transforms().transforms().size(), 1u);
  EXPECT_EQ(smooth->transforms().transforms()[0]->kind(), "smooth");
  auto plain_error = LayerOutputError(*plain, weight, held_out, 64);
  auto smooth_error = LayerOutputError(*smooth, weight, held_out, 64);
  ASSERT_TRUE(plain_error.ok() && smooth_error.ok());
  std::printf("[ ratio    ] %.4f\n", *smooth_error / *plain_error);
  EXPECT_LT(*smooth_error, 0.5 * *plain_error);
}

TEST_F(DataDependentLinearTest, AlphaSearchPicksTheBestCandidateOnCalibrationRows) {
  const int64_t n = 32, k = 96, rows = 128;
  const Tensor weight({n, k}, Gaussian(n * k, 0.05f));
  const std::vector<float> calibration = OutlierRows(rows, k);
  QuantRecipe searched = Recipe("w4a8-smooth");
  ASSERT_TRUE(searched.spec.smooth.search_alpha);
  auto best = Quantize(searched, weight, calibration, rows);
  ASSERT_TRUE(best.ok()) << best.status();
  auto best_error = LayerOutputError(*best, weight, calibration, rows);
  ASSERT_TRUE(best_error.ok());
  const auto& chosen =
      static_cast<const SmoothInputTransform&>(*best->transforms().transforms()[0]);
  bool chosen_is_a_candidate = false;
  for (double alpha : SmoothAlphaCandidates(searched.spec.smooth.alpha)) {
    QuantRecipe fixed = searched;
    fixed.spec.smooth.search_alpha = false;
    fixed.spec.smooth.alpha = alpha;
    auto layer = Quantize(fixed, weight, calibration, rows);
    ASSERT_TRUE(layer.ok());
    auto error = LayerOutputError(*layer, weight, calibration, rows);
    ASSERT_TRUE(error.ok());
    EXPECT_LE(*best_error, *error) << "alpha " << alpha;
    chosen_is_a_candidate |= alpha == chosen.alpha();
  }
  EXPECT_TRUE(chosen_is_a_candidate);
  // The chosen scales are the formula's for that alpha.
  ActivationCalibration stats = Calibrate(calibration, rows, k, searched, {});
  EXPECT_EQ(chosen.scales(),
            SmoothingScales(stats.raw_channel_absmax, weight.span(), n, chosen.alpha()));
}

TEST_F(DataDependentLinearTest, StaticScaleComesFromTheTransformedInputs) {
  const int64_t n = 16, k = 64, rows = 100;
  const Tensor weight({n, k}, Gaussian(n * k, 0.05f));
  const std::vector<float> calibration = OutlierRows(rows, k);
  for (const char* name : {"w8a8-smooth-static", "w4a4-flatten", "w8a8-flatten"}) {
    SCOPED_TRACE(name);
    const QuantRecipe recipe = Recipe(name);
    auto layer = Quantize(recipe, weight, calibration, rows);
    ASSERT_TRUE(layer.ok()) << layer.status();
    const std::vector<float> transformed =
        layer->transforms().ApplyToActivations(calibration, rows);
    auto expected = CalibratePerTensorScale(transformed, recipe.spec.activation.bits, 1.0f);
    ASSERT_TRUE(expected.ok());
    ASSERT_TRUE(layer->static_activation_scale().has_value());
    EXPECT_EQ(*layer->static_activation_scale(), *expected);
  }
}

// A margin on random data, so a fixed seed: over 100 fresh seeds the error ratio was 0.027 to
// 0.093 (median 0.042) against the bound 0.1 -- too close for fresh seeds. (Before the outlier
// channels were made distinct, 2 of 100 seeds drew one channel twice and reached 0.99.)
TEST_F(DataDependentLinearTest, FlattenMakesPerTensorInt4Work) {
  UseFixedSeed(7919);
  const int64_t n = 48, k = 128, rows = 256;
  const std::vector<float> calibration = OutlierRows(rows, k);
  const std::vector<float> held_out = OutlierRows(64, k);
  // As in real LLMs (and the outlier stress model), the outlier channels' weight columns are
  // correspondingly small, so those channels do not dominate the output.
  std::vector<float> w = Gaussian(n * k, 0.05f);
  for (size_t i = 0; i < outliers_.size(); ++i)
    for (int64_t r = 0; r < n; ++r) w[r * k + outliers_[i]] /= factors_[i];
  const Tensor weight({n, k}, w);
  // INT8 weights isolate the activation side.
  QuantRecipe flatten = Recipe("w4a4-flatten");
  flatten.spec.weight.bits = 8;
  QuantRecipe unflattened = flatten;
  unflattened.spec.flatten.enabled = false;
  auto with = Quantize(flatten, weight, calibration, rows);
  auto without = Quantize(unflattened, weight, calibration, rows);
  ASSERT_TRUE(with.ok() && without.ok()) << with.status() << without.status();
  // K grows, within the recipe's budget.
  EXPECT_GT(with->transformed_features(), k);
  EXPECT_LE(with->transformed_features(),
            k + static_cast<int64_t>(flatten.spec.flatten.max_growth * k));
  auto with_error = LayerOutputError(*with, weight, held_out, 64);
  auto without_error = LayerOutputError(*without, weight, held_out, 64);
  ASSERT_TRUE(with_error.ok() && without_error.ok());
  // Without splitting, one INT4 step is ~1/7 of the outliers' range and every ordinary input
  // rounds to 0.
  std::printf("[ ratio    ] %.4f\n", *with_error / *without_error);
  EXPECT_LT(*with_error, 0.1 * *without_error);
}

TEST_F(DataDependentLinearTest, GptqSeesTheHessianOfTheRotatedInputs) {
  const int64_t n = 24, k = 64, rows = 200;
  const Tensor weight({n, k}, Gaussian(n * k, 0.05f));
  const std::vector<float> calibration = OutlierRows(rows, k);
  const QuantRecipe recipe = Recipe("w8a8-hadamard-gptq");
  auto layer = Quantize(recipe, weight, calibration, rows);
  ASSERT_TRUE(layer.ok()) << layer.status();
  // Independently: rotate the rows, form X^T X in double, run GPTQ on the folded weight.
  const std::vector<float> rotated = layer->transforms().ApplyToActivations(calibration, rows);
  std::vector<double> h(k * k, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j)
        h[i * k + j] += double{rotated[r * k + i]} * rotated[r * k + j];
  const std::vector<float> folded = layer->transforms().TransformWeight(weight.span(), n);
  const QuantFormat format{.bits = 8, .symmetric = true, .group_size = 0};
  auto expected = QuantizeGptq(folded, n, k, h, format);
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(layer->weight().scales, expected->scales);
  int64_t same = 0;
  for (size_t i = 0; i < expected->codes.size(); ++i)
    same += layer->weight().codes[i] == expected->codes[i];
  EXPECT_GE(same, static_cast<int64_t>(0.99 * expected->codes.size()));
}

TEST_F(DataDependentLinearTest, CalibrationIsRequired) {
  const Tensor weight({8, 32}, Gaussian(8 * 32));
  for (const char* name : {"w8a8-smooth", "w4a8-gptq", "w4a4-flatten"}) {
    const QuantRecipe recipe = Recipe(name);
    auto layer = QuantizeDataDependentLinear(weight, nullptr, recipe, nullptr, {});
    EXPECT_TRUE(absl::IsFailedPrecondition(layer.status())) << name << ": " << layer.status();
  }
}

}  // namespace
}  // namespace flatfleet::quant
