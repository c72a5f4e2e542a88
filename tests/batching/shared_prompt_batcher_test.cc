// n > 1 choices sharing their prompt's KV blocks (PagedKvCache::Fork) in the continuous batcher,
// on the demo model: each choice equals the request run alone with seed ChoiceSeed(seed, i),
// token for token, while the pool holds the prompt's whole blocks once.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/batching/batching_test_util.h"
#include "tests/quant/test_random.h"
#include "worker/batching/continuous_batcher.h"
#include "worker/batching/step_replayer.h"
#include "worker/model/demo_model.h"

namespace flatfleet::engine {
namespace {

using testing::DemoModel;
using testing::ExpectSameGeneration;
using testing::GenerateAlone;
using testing::RandomPrompt;
using testing::RunToCompletion;

constexpr int64_t kBlock = 4;

std::unique_ptr<ContinuousBatcher> MakeBatcher(bool share, int64_t blocks = 512,
                                               int64_t max_step_tokens = 256) {
  auto batcher = ContinuousBatcher::Create(DemoModel(), nullptr,
                                           {.max_step_tokens = max_step_tokens,
                                            .kv_block_size = kBlock,
                                            .kv_cache_blocks = blocks,
                                            .share_prompt_blocks = share});
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  return batcher.ok() ? *std::move(batcher) : nullptr;
}

SamplingParams Random(uint64_t seed, int64_t max_tokens, int32_t n) {
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = seed;
  params.max_tokens = max_tokens;
  params.ignore_eos = true;
  params.n = n;
  return params;
}

std::vector<GenerationResult> Choices(const EngineResult& result) {
  std::vector<GenerationResult> choices = {result.result};
  choices.insert(choices.end(), result.other_choices.begin(), result.other_choices.end());
  return choices;
}

// Choice i of `params` run alone by Generator (a full prefill of the prompt, its own seed).
GenerationResult Alone(const std::vector<int32_t>& prompt, SamplingParams params, int64_t i) {
  params.n = 1;
  params.seed = ChoiceSeed(params.seed, i);
  return GenerateAlone(DemoModel(), {"alone", prompt, params});
}

class SharedPromptBatcherTest : public ::testing::Test {
 protected:
  SharedPromptBatcherTest() : seed_(quant::test_util::FreshSeed()) {
    trace_.emplace(__FILE__, __LINE__, "seed " + std::to_string(seed_));
  }
  uint64_t seed_;
  std::optional<::testing::ScopedTrace> trace_;
};

// What makes sharing exact on the CPU backend: the last position's logits after Fork(P) and a
// tail chunk equal, bit for bit, those of one full prefill (attention reads the same keys and
// values; every row's arithmetic is independent of the chunk it is computed in).
TEST_F(SharedPromptBatcherTest, ForkedTailLogitsEqualAFullPrefillBitForBit) {
  const LlamaModel& model = DemoModel();
  for (size_t length : {5u, 8u, 9u, 23u}) {
    SCOPED_TRACE(::testing::Message() << "prompt length " << length);
    const std::vector<int32_t> prompt = RandomPrompt(length, static_cast<uint32_t>(seed_));
    auto cache = *CreateBatcherKvCache(model, {.kv_block_size = kBlock, .kv_cache_blocks = 64});
    const SequenceId full = *cache->AddSequence();
    const std::vector<SequenceChunk> full_chunk = {{full, prompt, false}};
    auto full_logits = model.Forward(full_chunk, *cache);
    ASSERT_TRUE(full_logits.ok()) << full_logits.status();
    const int64_t shared = (static_cast<int64_t>(length) - 1) / kBlock * kBlock;
    auto child = cache->Fork(full, shared);
    ASSERT_TRUE(child.ok()) << child.status();
    const std::vector<int32_t> tail(prompt.begin() + shared, prompt.end());
    const std::vector<SequenceChunk> tail_chunk = {{*child, tail, false}};
    auto tail_logits = model.Forward(tail_chunk, *cache);
    ASSERT_TRUE(tail_logits.ok()) << tail_logits.status();
    ASSERT_EQ(full_logits->size(), tail_logits->size());
    for (int64_t i = 0; i < full_logits->size(); ++i) {
      ASSERT_EQ(full_logits->data()[i], tail_logits->data()[i]) << "logit " << i;
    }
  }
}

TEST_F(SharedPromptBatcherTest, SeededChoicesEqualSeparateRequestsTokenForToken) {
  for (size_t length : {9u, 16u, 3u}) {  // a partial last block, whole blocks, under one block
    SCOPED_TRACE(::testing::Message() << "prompt length " << length);
    auto batcher = MakeBatcher(/*share=*/true);
    const std::vector<int32_t> prompt = RandomPrompt(length, static_cast<uint32_t>(seed_ + length));
    const SamplingParams params = Random(seed_, 16, 4);
    ASSERT_TRUE(batcher->Submit({"multi", prompt, params}).ok());
    auto results = RunToCompletion(*batcher);
    ASSERT_TRUE(results.at("multi").status.ok()) << results.at("multi").status;
    const std::vector<GenerationResult> choices = Choices(results.at("multi"));
    ASSERT_EQ(choices.size(), 4u);
    std::set<std::vector<int32_t>> distinct;
    for (size_t i = 0; i < choices.size(); ++i) {
      ExpectSameGeneration(choices[i], Alone(prompt, params, static_cast<int64_t>(i)),
                           "choice " + std::to_string(i));
      distinct.insert(choices[i].tokens);
    }
    EXPECT_EQ(distinct.size(), 4u);  // 16 near-uniform 256-way draws each
    // The prompt counts once in usage (OpenAI's prompt_tokens); every choice reports it.
    EXPECT_EQ(results.at("multi").result.prompt_tokens, static_cast<int64_t>(length));
    // Prompts under one block have nothing whole to share.
    EXPECT_EQ(batcher->forked_choices(), length > kBlock ? 3 : 0);
    EXPECT_EQ(batcher->cache().used_blocks(), 0);
  }
}

TEST_F(SharedPromptBatcherTest, GreedyChoicesAreIdenticalAndEqualOneRequest) {
  auto batcher = MakeBatcher(/*share=*/true);
  const std::vector<int32_t> prompt = RandomPrompt(14, static_cast<uint32_t>(seed_));
  SamplingParams params = testing::Greedy(12);
  params.n = 3;
  ASSERT_TRUE(batcher->Submit({"greedy", prompt, params}).ok());
  auto results = RunToCompletion(*batcher);
  ASSERT_TRUE(results.at("greedy").status.ok());
  const GenerationResult expected = Alone(prompt, params, 0);
  const std::vector<GenerationResult> choices = Choices(results.at("greedy"));
  ASSERT_EQ(choices.size(), 3u);
  for (size_t i = 0; i < choices.size(); ++i) {
    ExpectSameGeneration(choices[i], expected, "choice " + std::to_string(i));
  }
  EXPECT_EQ(batcher->forked_choices(), 2);
}

// The pool's peak, counted exactly: all choices prefill in the first step without sharing, and
// decode in lockstep, so the peak is n full copies; with sharing the prompt's whole blocks are
// held once and each choice holds only its tail.
TEST_F(SharedPromptBatcherTest, SharingLowersThePeakBlockCountToThePromptOncePlusTails) {
  constexpr int64_t kLength = 37;
  constexpr int64_t kMaxTokens = 8;
  constexpr int32_t kChoices = 4;
  const std::vector<int32_t> prompt = RandomPrompt(kLength, static_cast<uint32_t>(seed_));
  const SamplingParams params = Random(seed_, kMaxTokens, kChoices);
  std::map<bool, std::vector<GenerationResult>> outputs;
  std::map<bool, int64_t> peak;
  for (bool share : {false, true}) {
    auto batcher = MakeBatcher(share);
    ASSERT_TRUE(batcher->Submit({"x", prompt, params}).ok());
    auto results = RunToCompletion(*batcher);
    ASSERT_TRUE(results.at("x").status.ok());
    outputs[share] = Choices(results.at("x"));
    peak[share] = batcher->cache().peak_used_blocks();
    EXPECT_EQ(batcher->forked_choices(), share ? kChoices - 1 : 0);
  }
  // The last sampled token is never fed: positions [0, 37 + 7) are stored, 11 blocks.
  const int64_t per_choice = (kLength + kMaxTokens - 1 + kBlock - 1) / kBlock;
  const int64_t shared = (kLength - 1) / kBlock;                     // 9 whole blocks of the prompt
  EXPECT_EQ(peak[false], kChoices * per_choice);                     // 44
  EXPECT_EQ(peak[true], shared + kChoices * (per_choice - shared));  // 17
  EXPECT_LT(peak[true], peak[false]);
  ASSERT_EQ(outputs[true].size(), outputs[false].size());
  for (size_t i = 0; i < outputs[true].size(); ++i) {
    ExpectSameGeneration(outputs[true][i], outputs[false][i], "choice " + std::to_string(i));
  }
}

// Choice 0 (the one that prefilled the prompt, whose blocks the others share) stops first: its
// retirement must leave the shared blocks to the others, who finish as they would alone.
TEST_F(SharedPromptBatcherTest, TheSharingSourceFinishingFirstLeavesTheOthersCorrect) {
  const std::vector<int32_t> prompt = RandomPrompt(13, static_cast<uint32_t>(seed_));
  SamplingParams params = Random(seed_, 16, 3);
  std::vector<GenerationResult> free_run;
  for (int64_t i = 0; i < 3; ++i) free_run.push_back(Alone(prompt, params, i));
  // A stop id choice 0 samples early and the others never sample: it ends choice 0 alone.
  std::optional<int32_t> stop;
  for (size_t at = 1; at < 8 && !stop; ++at) {
    const int32_t token = free_run[0].tokens[at];
    if (std::find(free_run[0].tokens.begin(), free_run[0].tokens.begin() + at, token) !=
        free_run[0].tokens.begin() + at) {
      continue;
    }
    bool elsewhere = false;
    for (size_t i = 1; i < 3; ++i) {
      elsewhere |= std::find(free_run[i].tokens.begin(), free_run[i].tokens.end(), token) !=
                   free_run[i].tokens.end();
    }
    if (!elsewhere) stop = token;
  }
  ASSERT_TRUE(stop.has_value()) << "no token ends choice 0 alone (32 draws of 256 collided)";
  params.stop_token_ids = {*stop};
  params.ignore_eos = true;
  auto batcher = MakeBatcher(/*share=*/true);
  ASSERT_TRUE(batcher->Submit({"x", prompt, params}).ok());
  auto results = RunToCompletion(*batcher);
  ASSERT_TRUE(results.at("x").status.ok());
  const std::vector<GenerationResult> choices = Choices(results.at("x"));
  EXPECT_EQ(choices[0].finish_reason, FinishReason::kStop);
  EXPECT_LT(choices[0].completion_tokens, 8);
  for (size_t i = 0; i < 3; ++i) {
    ExpectSameGeneration(choices[i], Alone(prompt, params, static_cast<int64_t>(i)),
                         "choice " + std::to_string(i));
  }
  EXPECT_EQ(choices[1].completion_tokens, 16);
  EXPECT_EQ(batcher->forked_choices(), 2);
  EXPECT_EQ(batcher->cache().used_blocks(), 0);
}

// A pool too small for every choice at once: choices wait or are preempted (a preempted one
// holds no block, and its siblings keep the shared ones), and each still equals its run alone.
TEST_F(SharedPromptBatcherTest, ATightPoolPreemptsChoicesWithoutLosingSharedBlocks) {
  const std::vector<int32_t> prompt = RandomPrompt(21, static_cast<uint32_t>(seed_));
  const SamplingParams params = Random(seed_, 20, 4);
  // One choice alone needs 11 blocks (40 positions); four sharing 5 prompt blocks need 25.
  auto batcher = MakeBatcher(/*share=*/true, /*blocks=*/14, /*max_step_tokens=*/16);
  ASSERT_TRUE(batcher->Submit({"x", prompt, params}).ok());
  ASSERT_TRUE(batcher->Submit({"after", RandomPrompt(6, 3), Random(seed_ + 1, 5, 1)}).ok());
  auto results = RunToCompletion(*batcher);
  ASSERT_TRUE(results.at("x").status.ok()) << results.at("x").status;
  ASSERT_TRUE(results.at("after").status.ok());
  const std::vector<GenerationResult> choices = Choices(results.at("x"));
  for (size_t i = 0; i < choices.size(); ++i) {
    ExpectSameGeneration(choices[i], Alone(prompt, params, static_cast<int64_t>(i)),
                         "choice " + std::to_string(i));
  }
  EXPECT_LE(batcher->cache().peak_used_blocks(), 14);
  // The schedule does not depend on the tokens (ignore_eos): 3 preemptions, and the preempted
  // choices came back as forks of a sibling still holding the prompt (5 forks for 3 choices).
  EXPECT_GT(batcher->preemptions(), 0);
  EXPECT_GT(batcher->forked_choices(), 3);
  EXPECT_EQ(batcher->cache().used_blocks(), 0);
}

TEST_F(SharedPromptBatcherTest, CancellingASharingRequestFreesEveryBlock) {
  auto batcher = MakeBatcher(/*share=*/true);
  const std::vector<int32_t> prompt = RandomPrompt(18, static_cast<uint32_t>(seed_));
  ASSERT_TRUE(batcher->Submit({"x", prompt, Random(seed_, 50, 3)}).ok());
  ASSERT_TRUE(batcher->Submit({"other", prompt, Random(seed_, 10, 1)}).ok());
  for (int step = 0; step < 4; ++step) batcher->Step();
  EXPECT_EQ(batcher->forked_choices(), 2);
  batcher->Cancel("x");
  auto results = RunToCompletion(*batcher);
  EXPECT_EQ(results.at("x").status.code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(results.at("other").status.ok());
  ExpectSameGeneration(results.at("other").result,
                       GenerateAlone(DemoModel(), {"other", prompt, Random(seed_, 10, 1)}),
                       "other");
  EXPECT_EQ(batcher->cache().used_blocks(), 0);
}

// A tensor-parallel follower replays the forks from the serialized plans: greedy picks from its
// logits give every choice's tokens, and its pool mirrors rank 0's sharing (the same peak).
TEST_F(SharedPromptBatcherTest, FollowerReplaysForksAndReproducesTheTokens) {
  auto batcher = MakeBatcher(/*share=*/true, /*blocks=*/64, /*max_step_tokens=*/12);
  auto follower_model = MakeDemoModel(kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(follower_model.ok());
  auto follower_cache =
      *CreateBatcherKvCache(**follower_model, {.kv_block_size = kBlock, .kv_cache_blocks = 64});
  StepReplayer replayer(**follower_model, *follower_cache);
  int64_t forks = 0;
  std::map<SequenceId, std::vector<int32_t>> follower_tokens;
  const int64_t vocab = DemoModel().config().vocab_size;
  batcher->set_plan_hook([&](const StepPlan& plan) -> absl::Status {
    auto parsed = ParseStepPlan(SerializeStepPlan(plan));
    if (!parsed.ok()) return parsed.status();
    auto logits = replayer.Replay(*parsed);
    if (!logits.ok()) return logits.status();
    for (size_t c = 0; c < parsed->chunks.size(); ++c) {
      const PlannedChunk& chunk = parsed->chunks[c];
      forks += chunk.fork_of != kNoFork;
      if (chunk.sample) {
        follower_tokens[chunk.sequence].push_back(
            Argmax(std::span<const float>(logits->row(static_cast<int64_t>(c)), vocab)));
      }
    }
    return absl::OkStatus();
  });
  const std::vector<int32_t> prompt = RandomPrompt(17, static_cast<uint32_t>(seed_));
  SamplingParams params = testing::Greedy(12);
  params.n = 3;
  ASSERT_TRUE(batcher->Submit({"x", prompt, params}).ok());
  auto results = RunToCompletion(*batcher);
  ASSERT_TRUE(results.at("x").status.ok()) << results.at("x").status;
  const GenerationResult expected = Alone(prompt, params, 0);
  for (const GenerationResult& choice : Choices(results.at("x"))) {
    ExpectSameGeneration(choice, expected, "choice");
  }
  EXPECT_EQ(batcher->preemptions(), 0);
  ASSERT_EQ(follower_tokens.size(), 3u);  // one sequence per choice
  for (const auto& [sequence, tokens] : follower_tokens) {
    EXPECT_EQ(tokens, expected.tokens) << "follower sequence " << sequence;
  }
  EXPECT_EQ(forks, 2);
  EXPECT_EQ(batcher->forked_choices(), 2);
  EXPECT_EQ(follower_cache->peak_used_blocks(), batcher->cache().peak_used_blocks());
}

}  // namespace
}  // namespace flatfleet::engine
