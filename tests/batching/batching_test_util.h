// Shared helpers for the batching tests: the demo model, prompts, reference generation and a
// loop that runs an engine to completion.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "worker/batching/continuous_batcher.h"
#include "worker/generate/generator.h"
#include "worker/model/demo_model.h"

namespace flatfleet::engine::testing {

// One demo model for the whole test binary (building it costs more than most tests).
inline const LlamaModel& DemoModel() {
  static const LlamaModel* model = [] {
    auto made = MakeDemoModel(kernels::cpu::DefaultCpuBackend());
    EXPECT_TRUE(made.ok()) << made.status();
    return made->release();
  }();
  return *model;
}

inline std::vector<int32_t> RandomPrompt(size_t length, uint32_t seed, int32_t vocab = 256) {
  std::mt19937 rng(seed);
  std::vector<int32_t> prompt(length);
  for (int32_t& token : prompt) token = static_cast<int32_t>(rng() % vocab);
  return prompt;
}

inline SamplingParams Greedy(int64_t max_tokens) {
  SamplingParams params;
  params.max_tokens = max_tokens;
  params.ignore_eos = true;
  return params;
}

// The request generated alone by Generator: the reference for every batched result.
inline GenerationResult GenerateAlone(const LlamaModel& model, const EngineRequest& request,
                                      const tokenizer::Tokenizer* tokenizer = nullptr) {
  Generator generator(model, tokenizer);
  GenerationRequest alone{request.prompt, request.params};
  auto results = generator.Generate(std::span<const GenerationRequest>(&alone, 1));
  EXPECT_TRUE(results.ok()) << results.status();
  return results.ok() ? (*results)[0] : GenerationResult{};
}

// Steps until idle; fails the test on a duplicate result or when it does not finish.
inline std::map<std::string, EngineResult> RunToCompletion(InferenceEngine& engine,
                                                           int max_steps = 100000) {
  std::map<std::string, EngineResult> results;
  for (int step = 0; step < max_steps && !engine.Idle(); ++step) {
    for (EngineResult& result : engine.Step()) {
      EXPECT_FALSE(results.contains(result.id)) << "duplicate result for " << result.id;
      results[result.id] = std::move(result);
    }
  }
  EXPECT_TRUE(engine.Idle()) << "engine did not finish within " << max_steps << " steps";
  return results;
}

inline void ExpectSameGeneration(const GenerationResult& actual, const GenerationResult& expected,
                                 const std::string& id) {
  EXPECT_EQ(actual.tokens, expected.tokens) << id;
  EXPECT_EQ(actual.text, expected.text) << id;
  EXPECT_EQ(actual.finish_reason, expected.finish_reason) << id;
  EXPECT_EQ(actual.prompt_tokens, expected.prompt_tokens) << id;
  EXPECT_EQ(actual.completion_tokens, expected.completion_tokens) << id;
}

}  // namespace flatfleet::engine::testing
