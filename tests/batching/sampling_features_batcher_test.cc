// The continuous batcher with the sampling features on the demo model: n > 1 choices, seeds that
// do not depend on the batch, stop token ids, min_tokens, penalties and logprobs that equal the
// log_softmax of the model's own logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "tests/batching/batching_test_util.h"
#include "tests/quant/test_random.h"
#include "worker/batching/continuous_batcher.h"

namespace flatfleet::engine {
namespace {

using testing::DemoModel;
using testing::ExpectSameGeneration;
using testing::GenerateAlone;
using testing::RandomPrompt;
using testing::RunToCompletion;

std::unique_ptr<ContinuousBatcher> MakeBatcher(int64_t max_step_tokens = 64) {
  auto batcher = ContinuousBatcher::Create(
      DemoModel(), nullptr,
      {.max_step_tokens = max_step_tokens, .kv_block_size = 4, .kv_cache_blocks = 512});
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  return batcher.ok() ? *std::move(batcher) : nullptr;
}

SamplingParams Random(uint64_t seed, int64_t max_tokens) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = seed;
  params.max_tokens = max_tokens;
  params.ignore_eos = true;
  return params;
}

EngineResult RunOne(ContinuousBatcher& batcher, EngineRequest request) {
  const std::string id = request.id;
  EXPECT_TRUE(batcher.Submit(std::move(request)).ok());
  auto results = RunToCompletion(batcher);
  EXPECT_TRUE(results.contains(id));
  return results[id];
}

class SamplingFeaturesBatcherTest : public ::testing::Test {
 protected:
  SamplingFeaturesBatcherTest() : seed_(quant::test_util::FreshSeed()) {
    trace_.emplace(__FILE__, __LINE__, "seed " + std::to_string(seed_));
  }
  uint64_t seed_;
  std::optional<::testing::ScopedTrace> trace_;
};

TEST_F(SamplingFeaturesBatcherTest, NChoicesAreDistinctWithASeedAndEachMatchesItsOwnSeed) {
  auto batcher = MakeBatcher();
  SamplingParams params = Random(seed_, 16);
  params.n = 4;
  const std::vector<int32_t> prompt = RandomPrompt(9, static_cast<uint32_t>(seed_));
  const EngineResult result = RunOne(*batcher, {"multi", prompt, params});
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_EQ(result.other_choices.size(), 3u);
  std::vector<GenerationResult> choices = {result.result};
  choices.insert(choices.end(), result.other_choices.begin(), result.other_choices.end());
  std::set<std::vector<int32_t>> distinct;
  for (size_t i = 0; i < choices.size(); ++i) {
    EXPECT_EQ(choices[i].tokens.size(), 16u) << i;
    distinct.insert(choices[i].tokens);
    // Choice i is the request with seed ChoiceSeed(seed, i) alone (the same random stream).
    SamplingParams alone = params;
    alone.n = 1;
    alone.seed = ChoiceSeed(params.seed, static_cast<int64_t>(i));
    ExpectSameGeneration(choices[i], GenerateAlone(DemoModel(), {"alone", prompt, alone}),
                         "choice " + std::to_string(i));
  }
  // 16 tokens drawn at temperature 1 from the demo model's near-uniform 256-way distributions.
  EXPECT_EQ(distinct.size(), 4u);
}

TEST_F(SamplingFeaturesBatcherTest, NChoicesAtTemperatureZeroAreEqual) {
  auto batcher = MakeBatcher();
  SamplingParams params = testing::Greedy(12);
  params.n = 3;
  const std::vector<int32_t> prompt = RandomPrompt(7, static_cast<uint32_t>(seed_));
  const EngineResult result = RunOne(*batcher, {"greedy", prompt, params});
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_EQ(result.other_choices.size(), 2u);
  SamplingParams one = params;
  one.n = 1;
  const GenerationResult expected = GenerateAlone(DemoModel(), {"alone", prompt, one});
  ExpectSameGeneration(result.result, expected, "choice 0");
  for (const GenerationResult& other : result.other_choices) {
    ExpectSameGeneration(other, expected, "other choice");
  }
}

TEST_F(SamplingFeaturesBatcherTest, SeededOutputDoesNotDependOnTheBatch) {
  const std::vector<int32_t> prompt = RandomPrompt(11, static_cast<uint32_t>(seed_));
  SamplingParams params = Random(seed_ ^ 0x5eed, 20);
  params.n = 2;
  params.top_k = 50;
  params.presence_penalty = 0.5f;
  auto alone_batcher = MakeBatcher(64);
  const EngineResult alone = RunOne(*alone_batcher, {"x", prompt, params});
  ASSERT_TRUE(alone.status.ok()) << alone.status;
  // The same request among others, submitted before and after it, with a smaller step budget
  // (so it is split, preempted or scheduled differently).
  auto crowded = MakeBatcher(8);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(crowded
                    ->Submit({"before" + std::to_string(i),
                              RandomPrompt(5 + i, static_cast<uint32_t>(seed_) + i),
                              Random(seed_ + i, 10 + i)})
                    .ok());
  }
  ASSERT_TRUE(crowded->Submit({"x", prompt, params}).ok());
  ASSERT_TRUE(crowded->Submit({"after", RandomPrompt(30, 7), Random(seed_ + 99, 15)}).ok());
  auto results = RunToCompletion(*crowded);
  ASSERT_TRUE(results["x"].status.ok());
  ExpectSameGeneration(results["x"].result, alone.result, "choice 0");
  ASSERT_EQ(results["x"].other_choices.size(), 1u);
  ExpectSameGeneration(results["x"].other_choices[0], alone.other_choices[0], "choice 1");
}

TEST_F(SamplingFeaturesBatcherTest, StopTokenIdsEndTheCompletionAtTheirFirstOccurrence) {
  auto batcher = MakeBatcher();
  const std::vector<int32_t> prompt = RandomPrompt(6, static_cast<uint32_t>(seed_));
  const EngineResult free = RunOne(*batcher, {"free", prompt, testing::Greedy(16)});
  ASSERT_EQ(free.result.tokens.size(), 16u);
  const int32_t stop = free.result.tokens[5];
  const size_t first = std::find(free.result.tokens.begin(), free.result.tokens.end(), stop) -
                       free.result.tokens.begin();
  SamplingParams params = testing::Greedy(16);
  params.stop_token_ids = {stop};
  const EngineResult stopped = RunOne(*batcher, {"stopped", prompt, params});
  EXPECT_EQ(stopped.result.finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.result.tokens,
            std::vector<int32_t>(free.result.tokens.begin(), free.result.tokens.begin() + first));
  EXPECT_EQ(stopped.result.completion_tokens, static_cast<int64_t>(first) + 1);
}

TEST_F(SamplingFeaturesBatcherTest, MinTokensKeepsAStopIdFromEndingTheCompletionEarly) {
  auto batcher = MakeBatcher();
  const std::vector<int32_t> prompt = RandomPrompt(6, static_cast<uint32_t>(seed_));
  const EngineResult free = RunOne(*batcher, {"free", prompt, testing::Greedy(8)});
  ASSERT_FALSE(free.result.tokens.empty());
  // The greedy first token as a stop id: without min_tokens the completion is empty.
  SamplingParams params = testing::Greedy(8);
  params.stop_token_ids = {free.result.tokens[0]};
  EXPECT_EQ(RunOne(*batcher, {"early", prompt, params}).result.completion_tokens, 1);
  params.min_tokens = 4;
  const EngineResult held = RunOne(*batcher, {"held", prompt, params});
  ASSERT_GE(held.result.tokens.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(held.result.tokens[i], free.result.tokens[0]) << i;
}

TEST_F(SamplingFeaturesBatcherTest, PenalisedRequestsMatchGeneratorAndChangeTheOutput) {
  auto batcher = MakeBatcher(16);
  const std::vector<int32_t> prompt = RandomPrompt(10, static_cast<uint32_t>(seed_));
  SamplingParams params = testing::Greedy(24);
  params.frequency_penalty = 2.0f;
  params.presence_penalty = 2.0f;
  params.repetition_penalty = 1.5f;
  const EngineResult penalised = RunOne(*batcher, {"p", prompt, params});
  ExpectSameGeneration(penalised.result, GenerateAlone(DemoModel(), {"p", prompt, params}), "p");
  // Plain greedy decoding of the demo model repeats tokens within 24 (10 to 24 distinct over 5
  // seeds); presence + frequency penalties of 2 cost a repeat more than the demo model's logit
  // spread, so every penalised token is new (24 distinct over 40 seeds measured).
  const std::set<int32_t> distinct(penalised.result.tokens.begin(), penalised.result.tokens.end());
  EXPECT_EQ(distinct.size(), penalised.result.tokens.size());
}

TEST_F(SamplingFeaturesBatcherTest, LogprobsEqualLogSoftmaxOfTheModelsLogits) {
  auto batcher = MakeBatcher(8);
  const std::vector<int32_t> prompt = RandomPrompt(13, static_cast<uint32_t>(seed_));
  SamplingParams params = Random(seed_, 10);
  params.logprobs = 3;
  const EngineResult result = RunOne(*batcher, {"lp", prompt, params});
  ASSERT_TRUE(result.status.ok());
  const GenerationResult& out = result.result;
  ASSERT_EQ(out.logprobs.size(), static_cast<size_t>(out.completion_tokens));
  // The model's logits for the whole context in one forward pass: row p predicts position p + 1.
  std::vector<int32_t> context = prompt;
  context.insert(context.end(), out.tokens.begin(), out.tokens.end());
  auto cache = CreateBatcherKvCache(DemoModel(), {.kv_block_size = 4, .kv_cache_blocks = 64});
  ASSERT_TRUE(cache.ok());
  const SequenceId sequence = *(*cache)->AddSequence();
  const SequenceChunk chunk{sequence, context, /*all_logits=*/true};
  auto logits = DemoModel().Forward(std::span<const SequenceChunk>(&chunk, 1), **cache);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const int64_t vocab = DemoModel().config().vocab_size;
  for (size_t k = 0; k < out.logprobs.size(); ++k) {
    const float* row = logits->row(static_cast<int64_t>(prompt.size() + k - 1));
    double sum = 0;
    double max = -INFINITY;
    for (int64_t v = 0; v < vocab; ++v) max = std::max(max, static_cast<double>(row[v]));
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
    auto log_softmax = [&](int32_t id) { return row[id] - max - std::log(sum); };
    const SampledToken& sampled = out.logprobs[k];
    EXPECT_EQ(sampled.token, out.tokens[k]) << k;
    // Chunked decode vs one prefill of the same context: float32 sums in another order
    // (the batching tests' logits agree to ~1e-5 on the demo model).
    EXPECT_NEAR(sampled.logprob, log_softmax(sampled.token), 1e-4) << k;
    ASSERT_EQ(sampled.top.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(sampled.top[i].logprob, log_softmax(sampled.top[i].token), 1e-4) << k;
      if (i > 0) EXPECT_GE(sampled.top[i - 1].logprob, sampled.top[i].logprob) << k;
    }
  }
}

TEST_F(SamplingFeaturesBatcherTest, CancellingAnNRequestCancelsEveryChoice) {
  auto batcher = MakeBatcher();
  SamplingParams params = Random(seed_, 200);
  params.n = 3;
  ASSERT_TRUE(batcher->Submit({"c", RandomPrompt(5, 1), params}).ok());
  // The id is taken until the last choice retired.
  EXPECT_FALSE(batcher->Submit({"c", RandomPrompt(5, 1), testing::Greedy(2)}).ok());
  batcher->Step();
  batcher->Cancel("c");
  auto results = RunToCompletion(*batcher);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(absl::IsCancelled(results["c"].status)) << results["c"].status;
  EXPECT_EQ(results["c"].other_choices.size(), 2u);
  EXPECT_EQ(batcher->cache().used_blocks(), 0);
}

TEST_F(SamplingFeaturesBatcherTest, BadSamplingParamsAreRefused) {
  auto batcher = MakeBatcher();
  auto refused = [&](SamplingParams params) {
    return !batcher->Submit({"bad", RandomPrompt(4, 1), params}).ok();
  };
  SamplingParams p = testing::Greedy(4);
  p.n = 0;
  EXPECT_TRUE(refused(p));
  p = testing::Greedy(4);
  p.repetition_penalty = 0.0f;
  EXPECT_TRUE(refused(p));
  p = testing::Greedy(4);
  p.min_tokens = 5;
  EXPECT_TRUE(refused(p));
  p = testing::Greedy(4);
  p.stop_token_ids = {DemoModel().config().vocab_size};
  EXPECT_TRUE(refused(p));
  p = testing::Greedy(4);
  p.logprobs = kMaxTopLogprobs + 1;
  EXPECT_TRUE(refused(p));
  EXPECT_TRUE(batcher->Idle());
}

}  // namespace
}  // namespace flatfleet::engine
