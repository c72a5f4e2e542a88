#include "quant/input_transform.h"

#include <cmath>

#include "gtest/gtest.h"
#include "quant/hadamard_input_transform.h"
#include "tests/quant/test_random.h"
#include "tests/quant/transform_test_util.h"

namespace flatfleet::quant {
namespace {

using test_util::MatMulTransposed;

class InputTransformTest : public test_util::RandomTest {};

TEST_F(InputTransformTest, HadamardChainPreservesTheLinearLayer) {
  const int64_t m = 5, n = 7, k = 96;  // 96 = 32 * 3: power of two times an odd block
  const std::vector<float> x = Gaussian(m * k);
  const std::vector<float> w = Gaussian(n * k);
  auto first = HadamardInputTransform::Create(k, UniformInt(0, 1 << 30));
  auto second = HadamardInputTransform::Create(k, UniformInt(0, 1 << 30));
  ASSERT_TRUE(first.ok() && second.ok());
  auto chain = InputTransformChain::Create({*first, *second});
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->OutFeatures(k), k);

  const std::vector<float> tx = chain->ApplyToActivations(x, m);
  const std::vector<float> tw = chain->TransformWeight(w, n);
  const std::vector<double> expected = MatMulTransposed(x, w, m, n, k);
  const std::vector<double> actual = MatMulTransposed(tx, tw, m, n, k);
  double worst = 0.0, scale = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    worst = std::max(worst, std::fabs(expected[i] - actual[i]));
    scale = std::max(scale, std::fabs(expected[i]));
  }
  EXPECT_LT(worst, 1e-5 * scale);
  // A real rotation, not the identity.
  double moved = 0.0;
  for (size_t i = 0; i < x.size(); ++i) moved = std::max(moved, double(std::fabs(x[i] - tx[i])));
  EXPECT_GT(moved, 1e-3);
}

TEST_F(InputTransformTest, HadamardSavesAndLoadsExactly) {
  const int64_t m = 3, k = 80;
  auto transform = HadamardInputTransform::Create(k, UniformInt(0, 1 << 30));
  ASSERT_TRUE(transform.ok());
  const TransformState state = (*transform)->Save();
  EXPECT_EQ(state.kind, "hadamard");
  auto loaded = LoadInputTransform(state);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::vector<float> x = Gaussian(m * k);
  std::vector<float> a(m * k), b(m * k);
  (*transform)->ApplyToActivations(x, m, a);
  (*loaded)->ApplyToActivations(x, m, b);
  EXPECT_EQ(a, b);
}

TEST(InputTransformErrors, MismatchedChainAndBadStatesAreRejected) {
  auto a = HadamardInputTransform::Create(64, 1);
  auto b = HadamardInputTransform::Create(32, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  auto chain = InputTransformChain::Create({*a, *b});
  ASSERT_FALSE(chain.ok());
  EXPECT_NE(chain.status().message().find("takes 32 features"), std::string::npos);

  TransformState unknown;
  unknown.kind = "spiral";
  EXPECT_NE(LoadInputTransform(unknown).status().message().find("spiral"), std::string::npos);
  TransformState missing_seed;
  missing_seed.kind = "hadamard";
  missing_seed.params = {{"size", 64}};
  EXPECT_NE(LoadInputTransform(missing_seed).status().message().find("seed"), std::string::npos);
}

}  // namespace
}  // namespace flatfleet::quant
