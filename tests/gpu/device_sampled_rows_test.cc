// The GPU engine's requests with penalties, min_tokens or logprobs: sampled on the device
// (penalties on a device copy of the row, top logprobs by device selection), beside plain
// requests in the same steps. Checked against the CPU engine on the trained stories260K, for
// independence from the batch on the GPU itself, and (ForwardAndSample's host_rows, which the
// batcher no longer uses) for the logits rows a caller may still copy down.
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/model_comparison.h"
#include "tests/quant/test_random.h"
#include "worker/batching/continuous_batcher.h"
#include "worker/model/llama_model.h"

namespace flatfleet::engine {
namespace {

const std::vector<std::vector<int32_t>> kPrompts = {{1, 301, 427, 309, 426, 301, 427, 309, 394},
                                                    {1, 301, 427, 309, 426},
                                                    {1, 394, 265, 262, 415, 271, 422, 280, 295},
                                                    {1, 432, 313, 448}};

// Request i: 0 plain greedy, 1 penalties with the top 20 logprobs, 2 logprobs with 3 alternatives,
// 3 min_tokens with its greedy first token as a stop id (all device sampled).
std::vector<EngineRequest> MixedRequests(int32_t stop_for_3) {
  std::vector<EngineRequest> requests;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    EngineRequest request;
    request.id = std::to_string(i);
    request.prompt = kPrompts[i];
    request.params.max_tokens = 16;
    request.params.ignore_eos = true;
    requests.push_back(std::move(request));
  }
  requests[1].params.frequency_penalty = 0.3f;
  requests[1].params.presence_penalty = 0.3f;
  requests[1].params.repetition_penalty = 1.1f;
  requests[1].params.logprobs = kMaxTopLogprobs;  // does not change its tokens
  requests[2].params.logprobs = 3;
  requests[3].params.stop_token_ids = {stop_for_3};
  requests[3].params.min_tokens = 4;
  return requests;
}

// A device top-logprobs list against the CPU's at one position. Rank by rank the values agree
// within tolerance + 1% of their magnitude (bf16 against float32 logits: ~1% relative error of
// a logit's distance from the top), and the ids wherever the CPU's value is clear of both
// neighbours by twice that: two tokens closer than that may swap.
void ExpectTopLogprobsNear(const SampledToken& got, const SampledToken& want, size_t count,
                           double tolerance) {
  ASSERT_EQ(got.top.size(), count);
  ASSERT_EQ(want.top.size(), count);
  for (size_t s = 0; s < count; ++s) {
    const double bound = tolerance + 0.01 * std::fabs(want.top[s].logprob);
    EXPECT_NEAR(got.top[s].logprob, want.top[s].logprob, bound) << "rank " << s;
    const bool clear_above = s == 0 || want.top[s - 1].logprob - want.top[s].logprob >= 2 * bound;
    // The last rank's unseen successor may be a near-tie: its id is not compared.
    const bool clear_below =
        s + 1 < count && want.top[s].logprob - want.top[s + 1].logprob >= 2 * bound;
    if (clear_above && clear_below) {
      EXPECT_EQ(got.top[s].token, want.top[s].token) << "rank " << s;
    }
    EXPECT_TRUE(std::isfinite(got.top[s].logprob) && got.top[s].logprob <= 0) << "rank " << s;
    if (s > 0) {
      EXPECT_LE(got.top[s].logprob, got.top[s - 1].logprob) << "rank " << s;
    }
  }
}

std::map<std::string, EngineResult> RunBatcher(const LlamaModel& model,
                                               std::vector<EngineRequest> requests) {
  ContinuousBatcherOptions options;
  options.kv_cache_blocks = 64;
  auto batcher = ContinuousBatcher::Create(model, nullptr, options);
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  std::map<std::string, EngineResult> results;
  if (!batcher.ok()) return results;
  for (EngineRequest& request : requests) EXPECT_TRUE((*batcher)->Submit(std::move(request)).ok());
  while (!(*batcher)->Idle()) {
    for (EngineResult& result : (*batcher)->Step()) {
      EXPECT_TRUE(result.status.ok()) << result.status;
      results[result.id] = std::move(result);
    }
  }
  return results;
}

TEST(DeviceSampledRowsTest, MixedBatchEqualsTheCpuEngine) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / "models/stories260K";
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto cpu = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  auto gpu = LoadLlamaModel(dir, **backend);
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  // The greedy first token of prompt 3 on the CPU: the stop id min_tokens holds back.
  std::vector<EngineRequest> probe = MixedRequests(0);
  probe.resize(1);
  probe[0].prompt = kPrompts[3];
  probe[0].params.max_tokens = 1;
  const int32_t first = RunBatcher(**cpu, probe)["0"].result.tokens.at(0);

  const auto expected = RunBatcher(**cpu, MixedRequests(first));
  const auto actual = RunBatcher(**gpu, MixedRequests(first));
  ASSERT_EQ(actual.size(), kPrompts.size());
  // Greedy with ignore_eos runs past the story's end, where a trained model meets near-ties that
  // bf16 logits (about 1% relative error over a spread of ~10: log-softmax moves by up to ~0.1)
  // may break either way. Requests 0, 1 and 3 meet none in 16 tokens here. Request 2 carries the
  // CPU's top-3 logprobs: it must equal the CPU token for token, logprobs included, until the
  // first position where the two differ, and that position must be a near-tie on the CPU (top-2
  // margin under kNearTie, 3x the error above): a divergence anywhere else is a bug.
  constexpr double kNearTie = 0.3;
  for (const auto& [id, result] : expected) {
    if (id == "2") continue;
    EXPECT_EQ(actual.at(id).result.tokens, result.result.tokens) << "request " << id;
  }
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(actual.at("3").result.tokens.at(i), first) << i;
  // Request 1 (penalties, device processed) equals the CPU's tokens: its top-20 logprobs at
  // every position, under the raw logits.
  {
    const auto& want1 = expected.at("1").result.logprobs;
    const auto& got1 = actual.at("1").result.logprobs;
    ASSERT_EQ(got1.size(), want1.size());
    for (size_t k = 0; k < got1.size(); ++k) {
      SCOPED_TRACE(testing::Message() << "request 1, position " << k);
      EXPECT_EQ(got1[k].token, want1[k].token);
      EXPECT_NEAR(got1[k].logprob, want1[k].logprob, 0.15);
      ExpectTopLogprobsNear(got1[k], want1[k], kMaxTopLogprobs, 0.15);
    }
  }
  const auto& want = expected.at("2").result.logprobs;
  const auto& got = actual.at("2").result.logprobs;
  ASSERT_EQ(got.size(), want.size());
  size_t agreed = 0;
  while (agreed < want.size() && got[agreed].token == want[agreed].token) {
    EXPECT_NEAR(got[agreed].logprob, want[agreed].logprob, 0.15) << agreed;
    ExpectTopLogprobsNear(got[agreed], want[agreed], 3, 0.15);
    ++agreed;
  }
  if (agreed < want.size()) {
    ASSERT_GE(want[agreed].top.size(), 2u);
    EXPECT_LT(want[agreed].top[0].logprob - want[agreed].top[1].logprob, kNearTie)
        << "request 2 left the CPU's tokens at position " << agreed << ", not a near-tie";
  }
  EXPECT_GE(agreed, 4u) << "too short a comparison to mean anything";
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_EQ(got[k].top.size(), 3u) << k;
    for (const TokenLogprob& top : got[k].top) {
      EXPECT_TRUE(std::isfinite(top.logprob) && top.logprob <= 0) << k;
    }
  }
}

TEST(DeviceSampledRowsTest, SeededPenalisedRequestDoesNotDependOnTheBatch) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / "models/stories260K";
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto gpu = LoadLlamaModel(dir, **backend);
  ASSERT_TRUE(gpu.ok());
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  EngineRequest target;
  target.id = "target";
  target.prompt = kPrompts[0];
  target.params.temperature = 1.0f;
  target.params.seed = seed;
  target.params.max_tokens = 24;
  target.params.ignore_eos = true;
  target.params.presence_penalty = 0.5f;
  target.params.logprobs = 2;
  target.params.n = 2;
  const auto alone = RunBatcher(**gpu, {target});
  std::vector<EngineRequest> crowd = MixedRequests(5);
  for (EngineRequest& request : crowd) {
    request.params.temperature = 0.8f;
    request.params.seed = seed + 1;
  }
  crowd.push_back(target);
  const auto crowded = RunBatcher(**gpu, crowd);
  ASSERT_TRUE(alone.contains("target") && crowded.contains("target"));
  EXPECT_EQ(crowded.at("target").result.tokens, alone.at("target").result.tokens);
  ASSERT_EQ(crowded.at("target").other_choices.size(), 1u);
  EXPECT_EQ(crowded.at("target").other_choices[0].tokens,
            alone.at("target").other_choices[0].tokens);
}

TEST(DeviceSampledRowsTest, HostRowsAreTheForwardsLogits) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / "models/stories260K";
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto gpu = LoadLlamaModel(dir, **backend);
  ASSERT_TRUE(gpu.ok());
  ContinuousBatcherOptions options;
  options.kv_cache_blocks = 64;
  // The workspace first, as ContinuousBatcher::Create does: the KV pool takes what is left.
  ASSERT_TRUE((*gpu)->ReserveWorkspace(64, 8).ok());
  auto run = [&](bool sample) {
    auto cache = CreateBatcherKvCache(**gpu, options);
    EXPECT_TRUE(cache.ok());
    std::vector<SequenceChunk> chunks;
    for (const std::vector<int32_t>& prompt : kPrompts) {
      chunks.push_back({*(*cache)->AddSequence(), prompt, false});
    }
    if (!sample) {
      auto logits = (*gpu)->Forward(chunks, **cache);
      EXPECT_TRUE(logits.ok()) << logits.status();
      return logits.ok() ? *std::move(logits) : Tensor();
    }
    std::vector<kernels::DeviceSamplingParams> params(chunks.size());
    const std::vector<int64_t> rows = {3, 1};
    Tensor host({2, 1});
    host.span()[0] = std::numeric_limits<float>::quiet_NaN();  // replaced, not read
    auto tokens = (*gpu)->ForwardAndSample(chunks, **cache, params, nullptr, rows, &host);
    EXPECT_TRUE(tokens.ok()) << tokens.status();
    return host;
  };
  const Tensor forward = run(false);
  const Tensor host = run(true);
  const int64_t vocab = (*gpu)->config().vocab_size;
  ASSERT_EQ(host.dim(0), 2);
  ASSERT_EQ(host.dim(1), vocab);
  for (int64_t v = 0; v < vocab; ++v) {
    // The same forward on the same device: the same kernels in the same order.
    ASSERT_EQ(host.row(0)[v], forward.row(3)[v]) << v;
    ASSERT_EQ(host.row(1)[v], forward.row(1)[v]) << v;
  }
}

}  // namespace
}  // namespace flatfleet::engine
