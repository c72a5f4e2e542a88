// The sampler's penalties, min_tokens masking, log probabilities and per-choice seeds against
// hand-computed expectations on small logits vectors.
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/quant/test_random.h"
#include "worker/sampling/sampler.h"
#include "worker/sampling/stop_conditions.h"

namespace flatfleet::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::Pointwise;

TEST(SamplerFeaturesTest, PenaltiesMatchVllmFormulasOnASmallVector) {
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  params.frequency_penalty = 0.5f;
  params.presence_penalty = 0.25f;
  const std::vector<int32_t> prompt = {1};
  Sampler sampler(params, prompt);
  // The completion so far: token 3 twice, token 0 once.
  sampler.Record(3);
  sampler.Record(0);
  sampler.Record(3);
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f};
  // By hand: repetition divides positive / multiplies negative logits of seen tokens (0, 1, 3):
  //   0: 2 / 2 = 1     1: -1 * 2 = -2     3: 3 / 2 = 1.5
  // then frequency (0.5 x count) and presence (0.25 once) on completion tokens (0, 3):
  //   0: 1 - 0.5 - 0.25 = 0.25     3: 1.5 - 1.0 - 0.25 = 0.25
  EXPECT_THAT(sampler.Processed(logits),
              Pointwise(FloatEq(), std::vector<float>{0.25f, -2.0f, 0.5f, 0.25f, -2.0f}));
  // Greedy after the penalties: token 2 (0.5) is now the most likely.
  EXPECT_EQ(sampler.Next(logits), 2);
}

TEST(SamplerFeaturesTest, NoPenaltiesLeaveTheLogitsAlone) {
  Sampler sampler(SamplingParams{});
  sampler.Record(0);
  EXPECT_FALSE(sampler.ProcessesLogits());
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f};
  EXPECT_EQ(sampler.Processed(logits), logits);
}

TEST(SamplerFeaturesTest, NegativeFrequencyPenaltyFavoursRepeats) {
  SamplingParams params;
  params.frequency_penalty = -1.0f;
  Sampler sampler(params);
  const std::vector<float> logits = {1.0f, 0.5f};
  EXPECT_EQ(sampler.Next(logits), 0);
  // 0 is sampled once more after each step: 1 + 1, 1 + 2, ...; 1 never catches up.
  EXPECT_EQ(sampler.Next(logits), 0);
  EXPECT_THAT(sampler.Processed(logits), ElementsAre(FloatEq(3.0f), FloatEq(0.5f)));
}

TEST(SamplerFeaturesTest, MinTokensBlocksTheStopIdsUntilReached) {
  SamplingParams params;
  params.min_tokens = 2;
  const std::vector<int32_t> stop_ids = {4, 1};
  Sampler sampler(params, {}, stop_ids);
  // Stop id 4 is the argmax and stop id 1 the runner-up: token 2 is the best allowed one.
  const std::vector<float> logits = {0.0f, 4.0f, 3.0f, -1.0f, 5.0f};
  EXPECT_TRUE(sampler.ProcessesLogits());
  const std::vector<float> masked = sampler.Processed(logits);
  EXPECT_EQ(masked[4], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(masked[1], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(masked[2], 3.0f);
  EXPECT_EQ(sampler.Next(logits), 2);
  EXPECT_EQ(sampler.Next(logits), 2);
  EXPECT_FALSE(sampler.ProcessesLogits());
  EXPECT_EQ(sampler.Next(logits), 4);
}

TEST(SamplerFeaturesTest, MinTokensAlsoHoldsAtATemperature) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = seed;
  params.min_tokens = 50;
  Sampler sampler(params, {}, {0});
  // Token 0 holds nearly all the mass; masked, it must never come out.
  const std::vector<float> logits = {20.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < 50; ++i) EXPECT_NE(sampler.Next(logits), 0) << "step " << i;
}

TEST(SamplerFeaturesTest, StopIdsAddTheEosIdsUnlessIgnored) {
  SamplingParams params;
  params.stop_token_ids = {9, 2};
  const std::vector<int32_t> eos = {2, 1};
  EXPECT_THAT(StopIds(params, eos), ElementsAre(9, 2, 1));
  params.ignore_eos = true;
  EXPECT_THAT(StopIds(params, eos), ElementsAre(9, 2));
  params.stop_token_ids.clear();
  EXPECT_TRUE(StopIds(params, eos).empty());
}

TEST(SamplerFeaturesTest, LogprobsAreTheLogSoftmaxOfTheRawLogits) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(257);
  for (float& v : logits) v = normal(rng);
  SamplingParams params;
  params.temperature = 0.7f;
  params.seed = seed;
  params.logprobs = 5;
  params.presence_penalty = 1.0f;  // the penalties change the draw, not the reported logprobs
  Sampler sampler(params);
  sampler.Record(static_cast<int32_t>(seed % logits.size()));
  const SampledToken sampled = sampler.Sample(logits);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v));
  auto log_softmax = [&](int32_t id) { return static_cast<double>(logits[id]) - std::log(sum); };
  // float32 rounding of a double result of magnitude < 30.
  EXPECT_NEAR(sampled.logprob, log_softmax(sampled.token), 1e-5);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ASSERT_EQ(sampled.top.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(sampled.top[i].token, order[i]) << i;
    EXPECT_NEAR(sampled.top[i].logprob, log_softmax(order[i]), 1e-5) << i;
  }
}

TEST(SamplerFeaturesTest, NoLogprobsUnlessAskedFor) {
  Sampler sampler(SamplingParams{});
  const SampledToken sampled = sampler.Sample(std::vector<float>{1.0f, 2.0f});
  EXPECT_EQ(sampled.token, 1);
  EXPECT_TRUE(sampled.top.empty());
  EXPECT_EQ(sampled.logprob, 0.0f);
}

TEST(SamplerFeaturesTest, ChoiceSeedsKeepChoiceZeroAndDifferOtherwise) {
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  EXPECT_EQ(ChoiceSeed(seed, 0), seed);
  std::set<uint64_t> seen;
  for (int64_t i = 0; i < 128; ++i) seen.insert(ChoiceSeed(seed, i));
  EXPECT_EQ(seen.size(), 128u);
  EXPECT_EQ(ChoiceSeed(seed, 5), ChoiceSeed(seed, 5));
  EXPECT_NE(ChoiceSeed(seed, 1), ChoiceSeed(seed + 1, 1));
}

}  // namespace
}  // namespace flatfleet::engine
