// SmoothQuant scaling and FlattenQuant channel splitting as InputTransforms: they preserve the
// linear layer, do what they are for (equal smoothed maxima; flattened channel maxima), and
// round-trip exactly through TransformState / LoadInputTransform.
#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"
#include "quant/flatten_input_transform.h"
#include "quant/hadamard_input_transform.h"
#include "quant/input_transform.h"
#include "quant/smooth_input_transform.h"
#include "tests/quant/test_random.h"
#include "tests/quant/transform_test_util.h"

namespace flatfleet::quant {
namespace {

using test_util::MatMulTransposed;

class SmoothFlattenTest : public test_util::RandomTest {
 protected:
  // Activations with a few channels 30-100x the rest.
  std::vector<float> OutlierActivations(int64_t m, int64_t k, std::vector<int64_t> channels) {
    std::vector<float> x = Gaussian(m * k);
    for (int64_t c : channels) {
      const float factor = UniformFloat(30.0f, 100.0f);
      for (int64_t r = 0; r < m; ++r) x[r * k + c] *= factor;
    }
    return x;
  }
  std::vector<float> ColumnAbsMax(const std::vector<float>& x, int64_t rows, int64_t cols) {
    std::vector<float> out(cols, 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) out[c] = std::max(out[c], std::fabs(x[r * cols + c]));
    return out;
  }
  // max |a - b| relative to max |a|.
  double RelativeMaxDiff(const std::vector<double>& a, const std::vector<double>& b) {
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, std::fabs(a[i] - b[i]));
      scale = std::max(scale, std::fabs(a[i]));
    }
    return worst / scale;
  }
  void ExpectRoundTrip(const InputTransform& transform, int64_t m, int64_t n) {
    const TransformState state = transform.Save();
    auto loaded = LoadInputTransform(state);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ((*loaded)->kind(), transform.kind());
    EXPECT_EQ((*loaded)->in_features(), transform.in_features());
    EXPECT_EQ((*loaded)->out_features(), transform.out_features());
    const int64_t in = transform.in_features(), out = transform.out_features();
    const std::vector<float> x = Gaussian(m * in), w = Gaussian(n * in);
    std::vector<float> a(m * out), b(m * out), wa(n * out), wb(n * out);
    transform.ApplyToActivations(x, m, a);
    (*loaded)->ApplyToActivations(x, m, b);
    transform.TransformWeight(w, n, wa);
    (*loaded)->TransformWeight(w, n, wb);
    EXPECT_EQ(a, b);
    EXPECT_EQ(wa, wb);
    EXPECT_EQ((*loaded)->Save().arrays, state.arrays);
    EXPECT_EQ((*loaded)->Save().params, state.params);
  }
};

TEST_F(SmoothFlattenTest, SmoothingPreservesTheLayerAndBalancesMaxima) {
  const int64_t m = 48, n = 24, k = 64;
  const std::vector<float> x = OutlierActivations(m, k, {3, 40});
  const std::vector<float> w = Gaussian(n * k, 0.05f);
  const double alpha = UniformFloat(0.3f, 0.8f);
  std::vector<float> scales = SmoothingScales(ColumnAbsMax(x, m, k), w, n, alpha);
  auto smooth = SmoothInputTransform::Create(scales, alpha);
  ASSERT_TRUE(smooth.ok()) << smooth.status();
  auto chain = InputTransformChain::Create({*smooth});
  ASSERT_TRUE(chain.ok());
  const std::vector<float> sx = chain->ApplyToActivations(x, m);
  const std::vector<float> sw = chain->TransformWeight(w, n);
  EXPECT_LT(RelativeMaxDiff(MatMulTransposed(x, w, m, n, k), MatMulTransposed(sx, sw, m, n, k)),
            1e-5);
  // s_j = X_j^a / W_j^(1-a) means max|X_j / s_j| = (X_j W_j)^(1-a) and max|W_j s_j| =
  // (X_j W_j)^a: their ratio is (X_j W_j)^(1-2a), the same for alpha 0.5 (=1).
  const std::vector<float> x_max = ColumnAbsMax(sx, m, k);
  const std::vector<float> w_max = ColumnAbsMax(sw, n, k);
  const std::vector<float> x_raw = ColumnAbsMax(x, m, k);
  const std::vector<float> w_raw = ColumnAbsMax(w, n, k);
  for (int64_t j = 0; j < k; ++j) {
    const double product = double{x_raw[j]} * w_raw[j];
    EXPECT_NEAR(x_max[j], std::pow(product, 1.0 - alpha), 1e-4 * std::pow(product, 1.0 - alpha));
    EXPECT_NEAR(w_max[j], std::pow(product, alpha), 1e-4 * std::pow(product, alpha));
  }
  // The outlier channels are no longer outliers: the smoothed per-channel maxima spread less.
  auto spread = [](std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v.back() / v[v.size() / 2];
  };
  EXPECT_LT(spread(x_max), 0.5 * spread(x_raw));
}

TEST_F(SmoothFlattenTest, SmoothSavesAndLoadsExactly) {
  const int64_t k = UniformInt(8, 80);
  std::vector<float> scales(k);
  for (float& s : scales) s = std::exp(UniformFloat(-3.0f, 3.0f));
  auto smooth = SmoothInputTransform::Create(scales, UniformFloat(0.0f, 1.0f));
  ASSERT_TRUE(smooth.ok());
  EXPECT_EQ((*smooth)->Save().kind, "smooth");
  ExpectRoundTrip(**smooth, 3, 5);
}

TEST_F(SmoothFlattenTest, FlattenPreservesTheLayerAndFlattensChannels) {
  const int64_t m = 40, n = 16, k = 96;
  const std::vector<int64_t> outliers = {5, 50, 77};
  const std::vector<float> x = OutlierActivations(m, k, outliers);
  const std::vector<float> w = Gaussian(n * k, 0.05f);
  const std::vector<float> absmax = ColumnAbsMax(x, m, k);
  const FlattenPlan plan = PlanFlatten(absmax, /*threshold=*/4.0, /*max_growth=*/0.5);
  auto flatten = FlattenInputTransform::Create(plan.splits);
  ASSERT_TRUE(flatten.ok()) << flatten.status();
  EXPECT_EQ((*flatten)->added_channels(), plan.added_channels);
  EXPECT_GT(plan.added_channels, 0);
  EXPECT_LE(plan.added_channels, k / 2);
  for (int64_t c : outliers) EXPECT_GT(plan.splits[c], 1) << "channel " << c;
  const int64_t wide = (*flatten)->out_features();
  EXPECT_EQ(wide, k + plan.added_channels);
  auto chain = InputTransformChain::Create({*flatten});
  ASSERT_TRUE(chain.ok());
  const std::vector<float> fx = chain->ApplyToActivations(x, m);
  const std::vector<float> fw = chain->TransformWeight(w, n);
  ASSERT_EQ(static_cast<int64_t>(fx.size()), m * wide);
  ASSERT_EQ(static_cast<int64_t>(fw.size()), n * wide);
  EXPECT_LT(RelativeMaxDiff(MatMulTransposed(x, w, m, n, k), MatMulTransposed(fx, fw, m, n, wide)),
            1e-5);
  // Every flattened channel is within the plan's target, which is far below the raw maximum.
  const std::vector<float> flat_max = ColumnAbsMax(fx, m, wide);
  const float raw_max = *std::max_element(absmax.begin(), absmax.end());
  for (float v : flat_max) EXPECT_LE(v, plan.target * (1 + 1e-6f));
  EXPECT_LT(plan.target, 0.5f * raw_max);
}

TEST_F(SmoothFlattenTest, FlattenRespectsTheGrowthBudget) {
  const int64_t k = 128;
  std::vector<float> absmax(k);
  for (float& v : absmax) v = UniformFloat(0.5f, 1.5f);
  for (int i = 0; i < 8; ++i) absmax[UniformInt(0, k - 1)] = UniformFloat(50.0f, 200.0f);
  for (double growth : {0.0, 0.05, 0.25}) {
    const FlattenPlan plan = PlanFlatten(absmax, 2.0, growth);
    EXPECT_LE(plan.added_channels, static_cast<int64_t>(std::floor(growth * k))) << growth;
    int64_t added = 0;
    for (int64_t j = 0; j < k; ++j) {
      added += plan.splits[j] - 1;
      EXPECT_LE(absmax[j] / plan.splits[j], plan.target * (1 + 1e-6f));
    }
    EXPECT_EQ(added, plan.added_channels);
  }
  // Nothing above the threshold: nothing split.
  std::vector<float> flat(k, 1.0f);
  EXPECT_EQ(PlanFlatten(flat, 2.0, 0.25).added_channels, 0);
}

TEST_F(SmoothFlattenTest, FlattenSavesAndLoadsExactly) {
  const int64_t k = UniformInt(4, 40);
  std::vector<int32_t> splits(k);
  for (int32_t& s : splits) s = static_cast<int32_t>(UniformInt(1, 5));
  auto flatten = FlattenInputTransform::Create(splits);
  ASSERT_TRUE(flatten.ok());
  EXPECT_EQ((*flatten)->Save().kind, "flatten");
  ExpectRoundTrip(**flatten, 4, 3);
}

TEST_F(SmoothFlattenTest, ChainOfAllKindsRoundTripsTransformByTransform) {
  const int64_t k = 32;
  std::vector<float> scales(k);
  for (float& s : scales) s = std::exp(UniformFloat(-1.0f, 1.0f));
  std::vector<int32_t> splits(k, 1);
  splits[UniformInt(0, k - 1)] = 3;
  auto smooth = SmoothInputTransform::Create(scales, 0.5);
  auto flatten = FlattenInputTransform::Create(splits);
  ASSERT_TRUE(smooth.ok() && flatten.ok());
  auto hadamard = HadamardInputTransform::Create((*flatten)->out_features(), UniformInt(0, 99));
  ASSERT_TRUE(hadamard.ok());
  auto chain = InputTransformChain::Create({*smooth, *flatten, *hadamard});
  ASSERT_TRUE(chain.ok()) << chain.status();
  std::vector<std::shared_ptr<const InputTransform>> reloaded;
  for (const auto& transform : chain->transforms()) {
    auto loaded = LoadInputTransform(transform->Save());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    reloaded.push_back(*loaded);
  }
  auto copy = InputTransformChain::Create(reloaded);
  ASSERT_TRUE(copy.ok());
  const std::vector<float> x = Gaussian(5 * k), w = Gaussian(7 * k);
  EXPECT_EQ(chain->ApplyToActivations(x, 5), copy->ApplyToActivations(x, 5));
  EXPECT_EQ(chain->TransformWeight(w, 7), copy->TransformWeight(w, 7));
}

TEST(SmoothFlattenErrors, BadStatesNameTheProblem) {
  auto message = [](const TransformState& state) {
    return std::string(LoadInputTransform(state).status().message());
  };
  TransformState smooth;
  smooth.kind = "smooth";
  smooth.params = {{"size", 3}, {"alpha", 0.5}};
  EXPECT_NE(message(smooth).find("scales"), std::string::npos);
  smooth.arrays["scales"] = {1.0f, 2.0f};
  EXPECT_NE(message(smooth).find("size is 3"), std::string::npos);
  smooth.arrays["scales"] = {1.0f, -2.0f, 1.0f};
  EXPECT_NE(message(smooth).find("scale 1"), std::string::npos);
  smooth.arrays["scales"] = {1.0f, 2.0f, 1.0f};
  smooth.params = {{"size", 3}};
  EXPECT_NE(message(smooth).find("alpha"), std::string::npos);

  TransformState flatten;
  flatten.kind = "flatten";
  flatten.params = {{"size", 2}};
  EXPECT_NE(message(flatten).find("splits"), std::string::npos);
  flatten.arrays["splits"] = {1.0f, 2.5f};
  EXPECT_NE(message(flatten).find("\"splits\"[1]"), std::string::npos);
  flatten.arrays["splits"] = {0.0f, 2.0f};
  EXPECT_NE(message(flatten).find("\"splits\"[0]"), std::string::npos);
  flatten.arrays["splits"] = {1.0f, 2.0f};
  EXPECT_TRUE(LoadInputTransform(flatten).ok());
}

}  // namespace
}  // namespace flatfleet::quant
