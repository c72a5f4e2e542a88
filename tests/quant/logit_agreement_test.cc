// KL and top-1 of CompareLogits on cases with known answers.
#include "quant/logit_agreement.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class LogitAgreementTest : public test_util::RandomTest {};

TEST_F(LogitAgreementTest, ShiftedLogitsAgreeExactly) {
  const int64_t vocab = UniformInt(2, 50), positions = UniformInt(1, 10);
  const std::vector<float> reference = Gaussian(vocab * positions, 3.0f);
  std::vector<float> shifted = reference;
  for (float& v : shifted) v += 5.0f;  // softmax is shift invariant
  auto result = CompareLogits(reference, shifted, vocab);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->positions, positions);
  EXPECT_NEAR(result->mean_kl, 0.0, 1e-9);
  EXPECT_EQ(result->top1_agreement, 1.0);
  EXPECT_EQ(result->max_flipped_margin, 0.0);
}

TEST_F(LogitAgreementTest, TwoTokenKlMatchesTheClosedForm) {
  const float a = UniformFloat(-2, 2), b = UniformFloat(-2, 2);
  // p = softmax(a, 0), q = softmax(b, 0): KL = p log(p/q) + (1-p) log((1-p)/(1-q)).
  const double p = 1.0 / (1.0 + std::exp(-a)), q = 1.0 / (1.0 + std::exp(-b));
  const double expected = p * std::log(p / q) + (1 - p) * std::log((1 - p) / (1 - q));
  auto result = CompareLogits(std::vector<float>{a, 0.0f}, std::vector<float>{b, 0.0f}, 2);
  ASSERT_TRUE(result.ok());
  EXPECT_NEAR(result->mean_kl, expected, 1e-6 * std::max(1.0, expected));
  EXPECT_EQ(result->top1_agreement, (a > 0) == (b > 0) ? 1.0 : 0.0);
  if ((a > 0) != (b > 0)) {
    EXPECT_FLOAT_EQ(result->max_flipped_margin, std::fabs(a));
  }
}

TEST_F(LogitAgreementTest, RejectsMismatchedSizes) {
  EXPECT_FALSE(CompareLogits(Gaussian(6), Gaussian(4), 2).ok());
  EXPECT_FALSE(CompareLogits(Gaussian(5), Gaussian(5), 2).ok());
}

}  // namespace
}  // namespace flatfleet::quant
