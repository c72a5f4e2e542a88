// RopeInverseFrequencies against values worked out by hand from transformers' formulas.
#include <cmath>
#include <numbers>

#include "common/model_config.h"
#include "gtest/gtest.h"
#include "tests/common/checkpoint_test_util.h"

namespace flatfleet {
namespace {

ModelConfig RopeConfig(int64_t head_dim, double theta) {
  ModelConfig config;
  config.head_dim = head_dim;
  config.rope_theta = theta;
  return config;
}

void ExpectNear(const std::vector<float>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], 2e-7 * std::abs(expected[i])) << "index " << i;
  }
}

TEST(RopeTest, DefaultIsPowersOfTheta) {
  // 10000^(-2i/8) for i = 0..3.
  ExpectNear(RopeInverseFrequencies(RopeConfig(8, 10000.0)), {1.0, 0.1, 0.01, 0.001});
}

TEST(RopeTest, DefaultMatchesClosedFormForRandomTheta) {
  testing::SeededRandom random;
  SCOPED_TRACE(::testing::Message() << "seed " << random.seed());
  std::uniform_real_distribution<double> theta_distribution(1000.0, 2e6);
  const double theta = static_cast<float>(theta_distribution(random.engine()));
  std::vector<double> expected;
  for (int i = 0; i < 128; i += 2) expected.push_back(std::pow(theta, -i / 128.0));
  const std::vector<float> actual = RopeInverseFrequencies(RopeConfig(128, theta));
  ASSERT_EQ(actual.size(), 64u);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], 1e-6 * expected[i]) << "index " << i;
  }
}

TEST(RopeTest, LinearDividesByFactor) {
  ModelConfig config = RopeConfig(8, 10000.0);
  config.rope_scaling.type = "linear";
  config.rope_scaling.factor = 4.0;
  ExpectNear(RopeInverseFrequencies(config), {0.25, 0.025, 0.0025, 0.00025});
}

TEST(RopeTest, Llama3CoversAllThreeBands) {
  // Wavelengths 2*pi/f are 6.28, 62.8, 628 and 6283; with original 1024 and factors 1 and 4 the
  // low-frequency cut is 1024 and the high-frequency cut 256, so the first two are kept, the
  // third is smoothed with s = (1024/628.3185 - 1)/3 = 0.2099157 giving
  // 0.01 * ((1 - s)/8 + s) = 0.00308676097, and the last is divided by 8.
  ModelConfig config = RopeConfig(8, 10000.0);
  config.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 1024};
  ExpectNear(RopeInverseFrequencies(config), {1.0, 0.1, 0.00308676097, 0.000125});
}

TEST(RopeTest, Llama3KeepsHighAndScalesLowFrequencies) {
  // Llama 3.1 8B settings.
  ModelConfig config = RopeConfig(128, 500000.0);
  config.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
  const std::vector<float> scaled = RopeInverseFrequencies(config);
  const std::vector<float> plain = RopeInverseFrequencies(RopeConfig(128, 500000.0));
  ASSERT_EQ(scaled.size(), 64u);
  int kept = 0, divided = 0, smoothed = 0;
  for (size_t i = 0; i < scaled.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi / plain[i];
    if (wavelen < 2048) {
      EXPECT_EQ(scaled[i], plain[i]);
      ++kept;
    } else if (wavelen > 8192) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i] / 8.0f);
      ++divided;
    } else {
      EXPECT_LT(scaled[i], plain[i]);
      EXPECT_GT(scaled[i], plain[i] / 8.0f);
      ++smoothed;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(smoothed, 0);
}

}  // namespace
}  // namespace flatfleet
