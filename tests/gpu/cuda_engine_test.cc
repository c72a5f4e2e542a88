// The whole model on the CUDA backend against the float32 CPU reference on the shared fixtures:
// the same logits within bf16 tolerance, the same argmax almost everywhere, and for the real
// pretrained stories260K the same greedy continuation.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/model_comparison.h"
#include "tests/quant/test_random.h"
#include "worker/batching/continuous_batcher.h"
#include "worker/generate/generator.h"
#include "worker/model/llama_model.h"
#include "worker/sampling/sampler.h"

namespace flatfleet::engine {
namespace {

class CudaEngineTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaEngineTest, MatchesTheCpuReference) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / GetParam();
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto cpu = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto gpu = LoadLlamaModel(dir, **backend);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const uint64_t seed = quant::test_util::FreshSeed();
  SCOPED_TRACE(testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  const Comparison c = Compare(**cpu, **gpu, seed);
  // bf16 weights and activations (8-bit mantissas) through a few layers: about 1% of the
  // logits' norm. Top-1 can flip only at near-ties of the reference, so it must agree wherever
  // the reference's margin is decisive (model_comparison.h), and at least a tenth of the
  // positions must be decisive for that to mean something.
  EXPECT_LT(c.relative_error, 3e-2);
  EXPECT_EQ(c.decisive_top1, 1.0);
  EXPECT_GE(c.decisive_fraction, 0.1);
  std::printf("%s: relative error %.3e, top-1 %.4f (decisive positions %.2f: %.4f)\n", GetParam(),
              c.relative_error, c.top1, c.decisive_fraction, c.decisive_top1);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaEngineTest,
                         ::testing::Values("fixtures/llama-tiny", "fixtures/mixtral-tiny",
                                           "models/stories260K"));

TEST(CudaEngineTest, GreedyStoriesEqualsTheCpu) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / "models/stories260K";
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto cpu = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  auto gpu = LoadLlamaModel(dir, **backend);
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  GenerationRequest request;
  request.prompt = {1, 301, 427, 309, 426, 301, 427, 309, 394};  // BOS "Spot. Spot saw"
  request.params.max_tokens = 48;
  request.params.ignore_eos = true;
  auto expected = Generator(**cpu, nullptr).Generate({&request, 1});
  auto actual = Generator(**gpu, nullptr).Generate({&request, 1});
  ASSERT_TRUE(expected.ok() && actual.ok());
  EXPECT_EQ((*actual)[0].tokens, (*expected)[0].tokens);
}

// The continuous batcher on the GPU (device sampling, decode steps replayed as CUDA graphs of
// batch buckets 8, 4, 2, 1 as requests finish) against the CPU batcher, greedy, on real text
// prompts of the trained stories260K (TinyStories probes; confident predictions, so bf16 does not
// reach a near-tie in 24 tokens).
TEST(CudaEngineTest, BatcherGreedyWithGraphsEqualsTheCpu) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / "models/stories260K";
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto cpu = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  auto gpu = LoadLlamaModel(dir, **backend);
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 301, 427, 309, 426, 301, 427, 309, 394},
      {1, 301, 427, 309, 426},
      {1, 394, 265, 262, 415, 271, 422, 280, 295, 269, 336},
      {1, 432, 313, 448},
      {1, 327, 432, 410, 462, 362, 422, 432},
      {1, 364, 420, 280, 295, 410, 293}};
  auto run = [&](const LlamaModel& model) {
    ContinuousBatcherOptions options;
    options.kv_cache_blocks = 64;
    auto batcher = ContinuousBatcher::Create(model, nullptr, options);
    EXPECT_TRUE(batcher.ok()) << batcher.status();
    for (size_t i = 0; i < prompts.size(); ++i) {
      EngineRequest request;
      request.id = std::to_string(i);
      request.prompt = prompts[i];
      request.params.max_tokens = 12 + 4 * static_cast<int64_t>(i);  // they finish one by one
      request.params.ignore_eos = true;
      EXPECT_TRUE((*batcher)->Submit(std::move(request)).ok());
    }
    std::map<std::string, std::vector<int32_t>> tokens;
    while (!(*batcher)->Idle()) {
      for (const EngineResult& result : (*batcher)->Step()) {
        EXPECT_TRUE(result.status.ok()) << result.status;
        tokens[result.id] = result.result.tokens;
      }
    }
    return tokens;
  };
  const auto expected = run(**cpu);
  const auto actual = run(**gpu);
  ASSERT_EQ(expected.size(), prompts.size());
  EXPECT_EQ(actual, expected);
}

// n > 1 choices sharing the prompt's KV blocks on the device pool (PagedKvCache::Fork; the
// forked choices compute only the prompt's last partial block): greedy choices equal the CPU's,
// and the pool's peak is lower than with every choice prefilling the prompt itself.
TEST(CudaEngineTest, BatcherGreedyChoicesSharingThePromptEqualTheCpu) {
  FF_SKIP_WITHOUT_GPU();
  const std::filesystem::path dir = SharedDir() / "models/stories260K";
  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto cpu = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  auto gpu = LoadLlamaModel(dir, **backend);
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  const std::vector<int32_t> prompt = {1,   394, 265, 262, 415, 271, 422, 280, 295, 269,
                                       336, 301, 427, 309, 426, 301, 427, 309, 394, 432};
  struct Run {
    std::vector<std::vector<int32_t>> choices;
    int64_t peak_blocks = 0;
    int64_t forks = 0;
  };
  auto run = [&](const LlamaModel& model, bool share) {
    ContinuousBatcherOptions options;
    options.kv_cache_blocks = 64;
    options.kv_block_size = 4;
    options.share_prompt_blocks = share;
    auto batcher = ContinuousBatcher::Create(model, nullptr, options);
    EXPECT_TRUE(batcher.ok()) << batcher.status();
    Run out;
    if (!batcher.ok()) return out;
    EngineRequest request;
    request.id = "n3";
    request.prompt = prompt;
    request.params.max_tokens = 16;
    request.params.ignore_eos = true;
    request.params.n = 3;
    EXPECT_TRUE((*batcher)->Submit(std::move(request)).ok());
    while (!(*batcher)->Idle()) {
      for (const EngineResult& result : (*batcher)->Step()) {
        EXPECT_TRUE(result.status.ok()) << result.status;
        out.choices.push_back(result.result.tokens);
        for (const GenerationResult& other : result.other_choices) {
          out.choices.push_back(other.tokens);
        }
      }
    }
    out.peak_blocks = (*batcher)->cache().peak_used_blocks();
    out.forks = (*batcher)->forked_choices();
    return out;
  };
  const Run expected = run(**cpu, /*share=*/false);
  const Run shared = run(**gpu, /*share=*/true);
  const Run unshared = run(**gpu, /*share=*/false);
  ASSERT_EQ(expected.choices.size(), 3u);
  EXPECT_EQ(shared.choices, expected.choices);
  EXPECT_EQ(unshared.choices, expected.choices);
  EXPECT_EQ(shared.forks, 2);
  // 20 prompt tokens (4 whole blocks shared of 5), 15 fed tokens: 9 blocks per choice alone.
  EXPECT_EQ(unshared.peak_blocks, 3 * 9);
  EXPECT_EQ(shared.peak_blocks, 4 + 3 * 5);
}

}  // namespace
}  // namespace flatfleet::engine
