#include "worker/batching/continuous_batcher.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/tokenizer/byte_tokenizer.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/batching/batching_test_util.h"
#include "worker/batching/step_replayer.h"

namespace flatfleet::engine {
namespace {

using testing::DemoModel;
using testing::ExpectSameGeneration;
using testing::GenerateAlone;
using testing::Greedy;
using testing::RandomPrompt;
using testing::RunToCompletion;

std::unique_ptr<ContinuousBatcher> MakeBatcher(ContinuousBatcherOptions options,
                                               const tokenizer::Tokenizer* tokenizer = nullptr) {
  auto batcher = ContinuousBatcher::Create(DemoModel(), tokenizer, options);
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  return batcher.ok() ? *std::move(batcher) : nullptr;
}

EngineRequest Request(std::string id, size_t prompt_length, uint32_t seed, SamplingParams params) {
  return {std::move(id), RandomPrompt(prompt_length, seed), std::move(params)};
}

TEST(ContinuousBatcherTest, RequestsJoiningARunningBatchMatchGeneratorAlone) {
  auto batcher = MakeBatcher({.max_step_tokens = 16, .kv_block_size = 4, .kv_cache_blocks = 256});
  std::vector<EngineRequest> requests = {
      Request("a", 5, 1, Greedy(12)), Request("b", 23, 2, Greedy(8)),
      Request("c", 40, 3, Greedy(10)), Request("d", 9, 4, Greedy(6)),
      Request("e", 2, 5, Greedy(9))};
  // "d" stops at the token Generator produces third, to exercise stop ids mid-batch.
  const GenerationResult d_free = GenerateAlone(DemoModel(), requests[3]);
  ASSERT_GE(d_free.tokens.size(), 3u);
  requests[3].params.stop_token_ids = {d_free.tokens[2]};
  // Submitted at steps 0, 0, 2, 5 and 7: later ones join while others prefill or decode.
  const std::map<int, std::vector<size_t>> submit_at = {{0, {0, 1}}, {2, {2}}, {5, {3}}, {7, {4}}};
  std::map<std::string, EngineResult> results;
  for (int step = 0; step < 1000 && (step <= 7 || !batcher->Idle()); ++step) {
    if (auto it = submit_at.find(step); it != submit_at.end()) {
      for (size_t i : it->second) ASSERT_TRUE(batcher->Submit(requests[i]).ok());
    }
    for (EngineResult& result : batcher->Step()) results[result.id] = std::move(result);
  }
  ASSERT_EQ(results.size(), requests.size());
  for (const EngineRequest& request : requests) {
    const EngineResult& result = results.at(request.id);
    ASSERT_TRUE(result.status.ok()) << result.status;
    ExpectSameGeneration(result.result, GenerateAlone(DemoModel(), request), request.id);
    EXPECT_GT(result.time_to_first_token_seconds, 0) << request.id;
    EXPECT_GE(result.total_seconds, result.time_to_first_token_seconds) << request.id;
  }
  EXPECT_EQ(results.at("d").result.finish_reason, FinishReason::kStop);
  EXPECT_EQ(results.at("d").result.tokens.size(), 2u);
  const EngineStats stats = batcher->Stats();
  EXPECT_EQ(stats.kv_cache_used_blocks, 0);
  EXPECT_EQ(stats.running_requests, 0);
  EXPECT_EQ(stats.prompt_tokens_total, 5 + 23 + 40 + 9 + 2);
  EXPECT_EQ(stats.generated_tokens_total, 12 + 8 + 10 + 3 + 9);
}

TEST(ContinuousBatcherTest, SeededSamplingDoesNotDependOnTheBatch) {
  SamplingParams params;
  params.temperature = 0.9f;
  params.top_k = 40;
  params.top_p = 0.95f;
  params.max_tokens = 10;
  params.ignore_eos = true;
  std::vector<EngineRequest> requests;
  for (int i = 0; i < 4; ++i) {
    params.seed = 100 + i;
    requests.push_back(Request(absl::StrCat("s", i), 6 + 5 * i, 10 + i, params));
  }
  // Alone, one batcher per request.
  std::map<std::string, std::vector<int32_t>> alone;
  for (const EngineRequest& request : requests) {
    auto batcher = MakeBatcher({});
    ASSERT_TRUE(batcher->Submit(request).ok());
    alone[request.id] = RunToCompletion(*batcher).at(request.id).result.tokens;
    // Generator uses the same sampler and seed.
    EXPECT_EQ(alone[request.id], GenerateAlone(DemoModel(), request).tokens) << request.id;
  }
  // Together, staggered, with a small step budget so the batches differ step by step.
  auto batcher = MakeBatcher({.max_step_tokens = 7});
  std::map<std::string, EngineResult> results;
  for (int step = 0; step < 1000 && (step < 4 || !batcher->Idle()); ++step) {
    if (step < 4) {
      ASSERT_TRUE(batcher->Submit(requests[3 - step]).ok());
    }
    for (EngineResult& result : batcher->Step()) results[result.id] = std::move(result);
  }
  ASSERT_EQ(results.size(), requests.size());
  std::set<std::vector<int32_t>> distinct;
  for (const EngineRequest& request : requests) {
    EXPECT_EQ(results.at(request.id).result.tokens, alone.at(request.id)) << request.id;
    distinct.insert(alone.at(request.id));
  }
  EXPECT_EQ(distinct.size(), requests.size());  // the seeds really sample different streams
}

TEST(ContinuousBatcherTest, TinyPoolPreemptsAndEveryRequestCompletesOnce) {
  // 10 blocks of 4 positions; each request alone needs up to 4 + ... <= 24 positions (6 blocks).
  ContinuousBatcherOptions options{
      .max_step_tokens = 32, .kv_block_size = 4, .kv_cache_blocks = 10};
  auto batcher = MakeBatcher(options);
  std::vector<EngineRequest> requests;
  for (int i = 0; i < 7; ++i) {
    requests.push_back(Request(absl::StrCat("p", i), 4 + i % 4, 30 + i, Greedy(14 + i % 3)));
  }
  for (const EngineRequest& request : requests) ASSERT_TRUE(batcher->Submit(request).ok());
  std::map<std::string, EngineResult> results;
  int64_t preempted_in_plans = 0;
  for (int step = 0; step < 10000 && !batcher->Idle(); ++step) {
    for (EngineResult& result : batcher->Step()) {
      ASSERT_FALSE(results.contains(result.id)) << "duplicate " << result.id;
      results[result.id] = std::move(result);
    }
    preempted_in_plans += static_cast<int64_t>(batcher->last_plan().preempted.size());
    const EngineStats stats = batcher->Stats();
    ASSERT_LE(stats.kv_cache_used_blocks, stats.kv_cache_total_blocks);
    ASSERT_EQ(
        stats.waiting_requests + stats.running_requests + static_cast<int64_t>(results.size()),
        static_cast<int64_t>(requests.size()));
  }
  EXPECT_GT(batcher->preemptions(), 0);
  EXPECT_EQ(preempted_in_plans, batcher->preemptions());
  ASSERT_EQ(results.size(), requests.size());
  for (const EngineRequest& request : requests) {
    const EngineResult& result = results.at(request.id);
    ASSERT_TRUE(result.status.ok()) << result.status;
    ExpectSameGeneration(result.result, GenerateAlone(DemoModel(), request), request.id);
  }
  EXPECT_EQ(batcher->Stats().kv_cache_used_blocks, 0);
}

// Admission needs free blocks for the whole prompt plus one decode block per running sequence.
TEST(ContinuousBatcherTest, AdmitsOnlyWhenPromptAndDecodeReserveFit) {
  for (const size_t second_prompt : {20u, 21u}) {
    auto batcher = MakeBatcher({.max_step_tokens = 64, .kv_block_size = 4, .kv_cache_blocks = 10});
    // "first" takes 4 blocks; 6 remain, of which 1 is kept for its next decode.
    ASSERT_TRUE(batcher->Submit(Request("first", 16, 1, Greedy(20))).ok());
    ASSERT_TRUE(batcher->Submit(Request("second", second_prompt, 2, Greedy(2))).ok());
    batcher->Step();
    const EngineStats stats = batcher->Stats();
    const bool fits = second_prompt <= 20;  // 5 blocks + 1 reserve <= 6
    EXPECT_EQ(stats.running_requests, fits ? 2 : 1) << second_prompt;
    EXPECT_EQ(stats.waiting_requests, fits ? 0 : 1) << second_prompt;
    EXPECT_EQ(stats.kv_cache_used_blocks, fits ? 9 : 4) << second_prompt;
    auto results = RunToCompletion(*batcher);
    EXPECT_EQ(results.size(), 2u);
  }
}

TEST(ContinuousBatcherTest, CancelsQueuedAndRunningRequests) {
  auto batcher = MakeBatcher({.max_running_sequences = 1});
  ASSERT_TRUE(batcher->Submit(Request("run", 6, 1, Greedy(50))).ok());
  ASSERT_TRUE(batcher->Submit(Request("queued", 6, 2, Greedy(5))).ok());
  ASSERT_TRUE(batcher->Submit(Request("later", 6, 3, Greedy(4))).ok());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(batcher->Step().empty());
  EXPECT_EQ(batcher->Stats().running_requests, 1);
  EXPECT_EQ(batcher->Stats().waiting_requests, 2);
  EXPECT_GT(batcher->Stats().kv_cache_used_blocks, 0);
  batcher->Cancel("run");
  batcher->Cancel("queued");
  batcher->Cancel("no-such-request");
  EXPECT_EQ(batcher->Stats().kv_cache_used_blocks, 0);  // freed at once
  std::vector<EngineResult> first = batcher->Step();
  std::map<std::string, EngineResult> results;
  for (EngineResult& result : first) results[result.id] = std::move(result);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results.at("run").status.code(), absl::StatusCode::kCancelled);
  EXPECT_NE(results.at("run").status.message().find("run"), std::string::npos);
  EXPECT_EQ(results.at("run").result.completion_tokens, 3);  // what it had generated
  EXPECT_EQ(results.at("queued").status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(results.at("queued").result.completion_tokens, 0);
  // The cancelled id is free again, and the remaining request completes normally.
  auto rest = RunToCompletion(*batcher);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_TRUE(rest.at("later").status.ok());
  EXPECT_EQ(rest.at("later").result.completion_tokens, 4);
  EXPECT_TRUE(batcher->Submit(Request("run", 3, 1, Greedy(2))).ok());
  batcher->Cancel("run");
  EXPECT_FALSE(batcher->Idle());  // the cancellation result is still to be returned
  auto last = batcher->Step();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(batcher->Idle());
}

TEST(ContinuousBatcherTest, RejectsInvalidRequestsNamingThem) {
  auto batcher = MakeBatcher({.kv_block_size = 16, .kv_cache_blocks = 4});  // 64 positions
  auto expect_invalid = [&](EngineRequest request, const std::string& fragment) {
    const std::string id = request.id;
    absl::Status status = batcher->Submit(std::move(request));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(absl::StrCat("'", id, "'")), std::string::npos) << status;
    EXPECT_NE(status.message().find(fragment), std::string::npos) << status;
  };
  expect_invalid({"empty", {}, Greedy(4)}, "empty prompt");
  expect_invalid({"negative", {1, -1, 2}, Greedy(4)}, "token -1");
  expect_invalid({"too-big", {1, 259}, Greedy(4)}, "token 259");
  expect_invalid({"zero-max", {1, 2}, Greedy(0)}, "max_tokens");
  expect_invalid({"model-limit", {1, 2, 3}, Greedy(4094)}, "4096 positions");
  expect_invalid({"pool-limit", RandomPrompt(40, 1), Greedy(26)}, "whole pool");
  SamplingParams hot = Greedy(2);
  hot.temperature = -1;
  expect_invalid({"temperature", {1}, hot}, "temperature");
  EXPECT_EQ(batcher->Submit({"", {1}, Greedy(1)}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(batcher->Idle());  // nothing was queued
  // Exactly the whole pool is fine: 40 + 25 - 1 = 64 positions.
  ASSERT_TRUE(batcher->Submit({"fits", RandomPrompt(40, 1), Greedy(25)}).ok());
  absl::Status duplicate = batcher->Submit({"fits", {1}, Greedy(1)});
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  auto results = RunToCompletion(*batcher);
  ASSERT_TRUE(results.at("fits").status.ok());
  EXPECT_EQ(results.at("fits").result.completion_tokens, 25);
}

TEST(ContinuousBatcherTest, ChunkedPrefillOfAPromptLongerThanTheStepBudget) {
  auto batcher = MakeBatcher({.max_step_tokens = 16});
  const EngineRequest request = Request("long", 50, 9, Greedy(5));
  ASSERT_TRUE(batcher->Submit(request).ok());
  std::vector<int64_t> step_tokens;
  std::map<std::string, EngineResult> results;
  while (!batcher->Idle()) {
    for (EngineResult& result : batcher->Step()) results[result.id] = std::move(result);
    step_tokens.push_back(batcher->last_plan().num_tokens());
    ASSERT_LT(step_tokens.size(), 100u);
  }
  // 16 + 16 + 16 + 2 prompt tokens (the last chunk samples the first token), then 4 decodes.
  EXPECT_EQ(step_tokens, (std::vector<int64_t>{16, 16, 16, 2, 1, 1, 1, 1}));
  ExpectSameGeneration(results.at("long").result, GenerateAlone(DemoModel(), request), "long");
}

TEST(ContinuousBatcherTest, StopStringsAndTextMatchGenerator) {
  tokenizer::ByteTokenizer bytes;
  auto batcher = MakeBatcher({}, &bytes);
  EngineRequest request = Request("text", 8, 21, Greedy(12));
  const GenerationResult free_run = GenerateAlone(DemoModel(), request, &bytes);
  ASSERT_GE(free_run.text.size(), 4u);
  request.params.stop_strings = {free_run.text.substr(2, 2)};
  ASSERT_TRUE(batcher->Submit(request).ok());
  ASSERT_TRUE(batcher->Submit(Request("other", 5, 22, Greedy(7))).ok());
  auto results = RunToCompletion(*batcher);
  const GenerationResult expected = GenerateAlone(DemoModel(), request, &bytes);
  ExpectSameGeneration(results.at("text").result, expected, "text");
  EXPECT_EQ(results.at("text").result.finish_reason, FinishReason::kStop);
}

// Rank 0's plans, broadcast as bytes, replayed by a follower with its own copy of the model and
// its own (differently shaped) cache, reproduce rank 0's greedy tokens, preemptions included.
TEST(ContinuousBatcherTest, FollowerReplayingSerializedPlansReproducesTheTokens) {
  auto batcher = MakeBatcher({.max_step_tokens = 12, .kv_block_size = 4, .kv_cache_blocks = 10});
  auto follower_model = MakeDemoModel(kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(follower_model.ok());
  const ModelConfig& config = (*follower_model)->config();
  auto follower_cache = *PagedKvCache::Create(
      {config.num_hidden_layers, (*follower_model)->kv_row_size(), /*block_size=*/8}, 64);
  StepReplayer replayer(**follower_model, *follower_cache);
  std::vector<EngineRequest> requests;
  for (int i = 0; i < 5; ++i) {
    requests.push_back(Request(absl::StrCat("f", i), 5 + 3 * i, 50 + i, Greedy(10)));
  }
  // Which request a sequence serves, recognised by its first tokens (the random prompts differ).
  std::map<SequenceId, std::string> request_of;
  std::map<std::string, std::vector<int32_t>> follower_tokens;
  batcher->set_plan_hook([&](const StepPlan& plan) -> absl::Status {
    auto parsed = ParseStepPlan(SerializeStepPlan(plan));
    if (!parsed.ok()) return parsed.status();
    auto logits = replayer.Replay(*parsed);
    if (!logits.ok()) return logits.status();
    for (size_t c = 0; c < parsed->chunks.size(); ++c) {
      const PlannedChunk& chunk = parsed->chunks[c];
      if (chunk.new_sequence) {
        for (const EngineRequest& request : requests) {
          if (std::equal(request.prompt.begin(), request.prompt.begin() + 4,
                         chunk.tokens.begin())) {
            request_of[chunk.sequence] = request.id;
          }
        }
      }
      if (chunk.sample) {
        follower_tokens[request_of.at(chunk.sequence)].push_back(
            Argmax(std::span<const float>(logits->row(c), config.vocab_size)));
      }
    }
    return absl::OkStatus();
  });
  for (const EngineRequest& request : requests) ASSERT_TRUE(batcher->Submit(request).ok());
  std::map<std::string, EngineResult> results = RunToCompletion(*batcher);
  EXPECT_GT(batcher->preemptions(), 0);
  ASSERT_EQ(results.size(), requests.size());
  for (const EngineRequest& request : requests) {
    const EngineResult& result = results.at(request.id);
    ASSERT_TRUE(result.status.ok()) << result.status;
    // Sampling resumes after a recompute, so the follower saw each token exactly once.
    EXPECT_EQ(follower_tokens[request.id], result.result.tokens) << request.id;
    ExpectSameGeneration(result.result, GenerateAlone(DemoModel(), request), request.id);
  }
}

TEST(ContinuousBatcherTest, TwoHundredShortRequestsCompleteWithExactCounts) {
  auto batcher = MakeBatcher({.max_step_tokens = 64,
                              .max_running_sequences = 32,
                              .kv_block_size = 8,
                              .kv_cache_blocks = 48});
  int64_t prompt_total = 0, generated_total = 0;
  std::map<std::string, int64_t> expected_tokens;
  for (int i = 0; i < 200; ++i) {
    const int64_t max_tokens = 1 + i % 4;
    EngineRequest request = Request(absl::StrCat("r", i), 2 + i % 7, 1000 + i, Greedy(max_tokens));
    prompt_total += static_cast<int64_t>(request.prompt.size());
    generated_total += max_tokens;
    expected_tokens[request.id] = max_tokens;
    ASSERT_TRUE(batcher->Submit(std::move(request)).ok());
  }
  EXPECT_EQ(batcher->Stats().waiting_requests, 200);
  auto results = RunToCompletion(*batcher);
  ASSERT_EQ(results.size(), 200u);
  for (const auto& [id, count] : expected_tokens) {
    const EngineResult& result = results.at(id);
    ASSERT_TRUE(result.status.ok()) << id << ": " << result.status;
    EXPECT_EQ(result.result.completion_tokens, count) << id;
    EXPECT_EQ(static_cast<int64_t>(result.result.tokens.size()), count) << id;
    EXPECT_EQ(result.result.finish_reason, FinishReason::kLength) << id;
  }
  const EngineStats stats = batcher->Stats();
  EXPECT_EQ(stats.prompt_tokens_total, prompt_total);
  EXPECT_EQ(stats.generated_tokens_total, generated_total);
  EXPECT_EQ(stats.kv_cache_used_blocks, 0);
  EXPECT_EQ(stats.kv_cache_total_blocks, 48);
  EXPECT_EQ(stats.waiting_requests + stats.running_requests, 0);
  EXPECT_LT(stats.steps_total, 200);  // requests really were batched
}

// INT8 KV cache on the real fixtures: greedy continuations against the float32 cache. Tokens
// are compared up to each sequence's first divergence (after it, inputs differ); the agreement is
// the matched fraction of all generated tokens.
double Int8KvGreedyAgreement(const std::string& fixture) {
  const std::filesystem::path dir =
      std::filesystem::path(FLATFLEET_SHARED_DIR) / "fixtures" / fixture;
  auto model = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return 0.0;
  const int32_t vocab = static_cast<int32_t>((*model)->config().vocab_size);
  std::map<std::string, std::vector<int32_t>> tokens[2];
  for (int int8 = 0; int8 < 2; ++int8) {
    ContinuousBatcherOptions options;
    options.kv_cache_dtype = int8 ? KvCacheDtype::kInt8 : KvCacheDtype::kFloat32;
    auto batcher = ContinuousBatcher::Create(**model, nullptr, options);
    EXPECT_TRUE(batcher.ok()) << batcher.status();
    if (!batcher.ok()) return 0.0;
    for (uint32_t i = 0; i < 12; ++i) {
      SamplingParams params = Greedy(24);
      params.ignore_eos = true;
      EXPECT_TRUE(
          (*batcher)
              ->Submit({absl::StrCat("r", i), RandomPrompt(8 + 3 * i, 100 + i, vocab), params})
              .ok());
    }
    for (auto& [id, result] : RunToCompletion(**batcher)) tokens[int8][id] = result.result.tokens;
  }
  int64_t matched = 0, total = 0;
  for (const auto& [id, reference] : tokens[0]) {
    const std::vector<int32_t>& candidate = tokens[1].at(id);
    total += static_cast<int64_t>(reference.size());
    for (size_t t = 0; t < reference.size() && t < candidate.size(); ++t) {
      if (reference[t] != candidate[t]) break;
      ++matched;
    }
  }
  const double agreement = total > 0 ? static_cast<double>(matched) / total : 0.0;
  std::printf("%s: INT8 KV greedy agreement %lld/%lld = %.3f\n", fixture.c_str(),
              static_cast<long long>(matched), static_cast<long long>(total), agreement);
  return agreement;
}

// Measured 2026-11-23: llama-tiny 266/288 = 0.924 (one sequence diverges at a near-tie),
// mixtral-tiny 288/288. The bounds leave room for a different divergence point, not for a broken
// cache (which diverges within a token or two: agreement < 0.2).
TEST(ContinuousBatcherInt8KvTest, GreedyOutputStaysCloseToFloatCacheOnFixtures) {
  EXPECT_GE(Int8KvGreedyAgreement("llama-tiny"), 0.85);
  EXPECT_GE(Int8KvGreedyAgreement("mixtral-tiny"), 0.95);
}

}  // namespace
}  // namespace flatfleet::engine
