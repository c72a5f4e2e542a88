// Sampling rules, stop conditions and batched generation.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/engine/test_util.h"
#include "worker/generate/generator.h"
#include "worker/model/demo_model.h"
#include "worker/sampling/sampler.h"
#include "worker/sampling/stop_conditions.h"

// Designated initializers for SamplingParams leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace flatfleet::engine {
namespace {

std::vector<float> RandomLogits(int n, std::mt19937& rng, float stddev = 2.0f) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> logits(n);
  for (float& v : logits) v = normal(rng);
  return logits;
}

TEST(SamplerTest, GreedyPicksArgmax) {
  std::mt19937 rng(1);
  Sampler sampler(SamplingParams{});
  for (int trial = 0; trial < 50; ++trial) {
    const std::vector<float> logits = RandomLogits(300, rng);
    const int32_t expected =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(sampler.Next(logits), expected);
  }
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::mt19937 rng(2);
  const std::vector<float> logits = RandomLogits(100, rng, 1.0f);
  SamplingParams params;
  params.temperature = 1.0f;
  params.seed = 42;
  auto draw = [&](SamplingParams p) {
    Sampler sampler(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(sampler.Next(logits));
    return out;
  };
  EXPECT_EQ(draw(params), draw(params));
  SamplingParams other = params;
  other.seed = 43;
  EXPECT_NE(draw(params), draw(other));
}

// The allowed set computed independently: sort by probability, keep top_k, then the shortest
// prefix whose probability mass reaches top_p.
std::set<int32_t> AllowedSet(const std::vector<float>& logits, float temperature, int64_t top_k,
                             float top_p) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (top_k > 0) order.resize(std::min<size_t>(top_k, order.size()));
  std::vector<double> p;
  double total = 0;
  for (int32_t id : order) total += std::exp((logits[id] - logits[order[0]]) / temperature);
  std::set<int32_t> allowed;
  double mass = 0;
  for (int32_t id : order) {
    allowed.insert(id);
    mass += std::exp((logits[id] - logits[order[0]]) / temperature) / total;
    if (mass >= top_p) break;
  }
  return allowed;
}

struct FilterCase {
  float temperature;
  int64_t top_k;
  float top_p;
};

class FilterTest : public ::testing::TestWithParam<FilterCase> {};

TEST_P(FilterTest, NeverEmitsTokensOutsideTheAllowedSet) {
  const FilterCase c = GetParam();
  std::mt19937 rng(3);
  const std::vector<float> logits = RandomLogits(200, rng, 1.5f);
  const std::set<int32_t> allowed = AllowedSet(logits, c.temperature, c.top_k, c.top_p);
  ASSERT_GT(allowed.size(), 1u);  // otherwise the test could not fail by sampling
  SamplingParams params{
      .temperature = c.temperature, .top_k = c.top_k, .top_p = c.top_p, .seed = 7};
  Sampler sampler(params);
  const std::vector<int32_t> candidates = sampler.Candidates(logits);
  EXPECT_EQ(std::set<int32_t>(candidates.begin(), candidates.end()), allowed);
  std::set<int32_t> seen;
  for (int i = 0; i < 5000; ++i) {
    const int32_t token = sampler.Next(logits);
    ASSERT_TRUE(allowed.contains(token)) << token;
    seen.insert(token);
  }
  EXPECT_GT(seen.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Filters, FilterTest,
                         ::testing::Values(FilterCase{1.0f, 5, 1.0f}, FilterCase{2.0f, 12, 1.0f},
                                           FilterCase{1.0f, 0, 0.5f}, FilterCase{0.7f, 0, 0.9f},
                                           FilterCase{1.3f, 20, 0.6f}));

TEST(SamplerTest, DistributionFollowsTemperatureSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, -1.0f};
  SamplingParams params{.temperature = 2.0f, .seed = 5};
  Sampler sampler(params);
  std::vector<int> counts(3);
  const int draws = 60000;
  for (int i = 0; i < draws; ++i) ++counts[sampler.Next(logits)];
  const double z = std::exp(0.5) + 1.0 + std::exp(-0.5);
  EXPECT_NEAR(counts[0] / double(draws), std::exp(0.5) / z, 0.01);
  EXPECT_NEAR(counts[2] / double(draws), std::exp(-0.5) / z, 0.01);
}

TEST(StopStringTest, FindsEarliestOccurrence) {
  const std::vector<std::string> stops = {"world", "lo", ""};
  EXPECT_EQ(FindStopString("hello world", stops), 3u);
  EXPECT_EQ(FindStopString("say world", stops), 4u);
  EXPECT_EQ(FindStopString("nothing here", stops), std::nullopt);
  EXPECT_EQ(FindStopString("abc", std::vector<std::string>{}), std::nullopt);
}

class GenerationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = MakeDemoModel(kernels::cpu::DefaultCpuBackend(), /*seed=*/5);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    tokenizer_ = tokenizer::MakeByteTokenizer();
  }

  GenerationRequest Request(const std::string& prompt, SamplingParams params) const {
    return GenerationRequest{*tokenizer_->Encode(prompt, true), std::move(params)};
  }

  std::vector<GenerationResult> Run(const std::vector<GenerationRequest>& requests) const {
    auto results = Generator(*model_, tokenizer_.get()).Generate(requests);
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *std::move(results) : std::vector<GenerationResult>{};
  }

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
};

TEST_F(GenerationTest, MaxTokensEndsWithLength) {
  const auto results = Run({Request("abc", {.max_tokens = 7, .ignore_eos = true})});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].tokens.size(), 7u);
  EXPECT_EQ(results[0].completion_tokens, 7);
  EXPECT_EQ(results[0].prompt_tokens,
            static_cast<int64_t>(tokenizer_->Encode("abc", true)->size()));
  EXPECT_EQ(results[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(results[0].text, tokenizer_->Decode(results[0].tokens, true));
}

TEST_F(GenerationTest, StopTokenEndsWithStopAndIsNotReturned) {
  const auto free_run = Run({Request("xyz", {.max_tokens = 12, .ignore_eos = true})});
  const std::vector<int32_t>& tokens = free_run[0].tokens;
  const int32_t stop = tokens[4];
  const size_t first = std::find(tokens.begin(), tokens.end(), stop) - tokens.begin();
  const auto stopped = Run({Request("xyz", {.max_tokens = 12, .stop_token_ids = {stop}})});
  EXPECT_EQ(stopped[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped[0].tokens, std::vector<int32_t>(tokens.begin(), tokens.begin() + first));
}

TEST_F(GenerationTest, StopStringTruncatesTextBeforeIt) {
  const auto free_run = Run({Request("The", {.max_tokens = 24, .ignore_eos = true})});
  const std::vector<int32_t>& tokens = free_run[0].tokens;
  // A stop string made of two generated bytes from the middle of the completion.
  const std::string stop = tokenizer_->Decode(std::span<const int32_t>(tokens).subspan(6, 2), true);
  ASSERT_FALSE(stop.empty());
  // Expected: the text of the shortest token prefix that contains the stop, cut before it.
  std::string expected;
  size_t stop_tokens = 0;
  for (size_t n = 1; n <= tokens.size(); ++n) {
    const std::string text = tokenizer_->Decode(std::span<const int32_t>(tokens).first(n), true);
    if (size_t at = text.find(stop); at != std::string::npos) {
      expected = text.substr(0, at);
      stop_tokens = n;
      break;
    }
  }
  ASSERT_GT(stop_tokens, 0u);
  SamplingParams params{.max_tokens = 24, .ignore_eos = true, .stop_strings = {"\x01never", stop}};
  const auto stopped = Run({Request("The", params)});
  EXPECT_EQ(stopped[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped[0].text, expected);
  EXPECT_EQ(stopped[0].tokens.size(), stop_tokens);
  EXPECT_EQ(stopped[0].text.find(stop), std::string::npos);
}

TEST_F(GenerationTest, SeededSamplingIsIndependentOfBatchComposition) {
  SamplingParams params{.temperature = 0.9f,
                        .top_k = 50,
                        .top_p = 0.95f,
                        .seed = 1234,
                        .max_tokens = 10,
                        .ignore_eos = true};
  const auto alone = Run({Request("Once upon", params)});
  SamplingParams other = params;
  other.seed = 9;
  const auto batched = Run({Request("x", other), Request("Once upon", params),
                            Request("a much longer prompt than the others", {.max_tokens = 3})});
  ASSERT_EQ(batched.size(), 3u);
  EXPECT_EQ(batched[1].tokens, alone[0].tokens);
  EXPECT_EQ(batched[2].tokens.size() <= 3, true);
}

TEST_F(GenerationTest, ChunkedPrefillGivesTheSameGreedyTokens) {
  const GenerationRequest request = Request("a prompt long enough to be split into chunks",
                                            {.max_tokens = 8, .ignore_eos = true});
  const auto whole = Run({request});
  GeneratorOptions options;
  options.max_step_tokens = 5;
  auto chunked = Generator(*model_, tokenizer_.get(), options).Generate({&request, 1});
  ASSERT_TRUE(chunked.ok());
  EXPECT_EQ((*chunked)[0].tokens, whole[0].tokens);
}

TEST_F(GenerationTest, SequenceLengthCapEndsWithLength) {
  const GenerationRequest request = Request("abcd", {.max_tokens = 50, .ignore_eos = true});
  GeneratorOptions options;
  options.max_sequence_length = static_cast<int64_t>(request.prompt.size()) + 5;
  auto results = Generator(*model_, tokenizer_.get(), options).Generate({&request, 1});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].tokens.size(), 5u);
  EXPECT_EQ((*results)[0].finish_reason, FinishReason::kLength);
}

TEST_F(GenerationTest, RejectsEmptyPromptAndZeroMaxTokens) {
  GenerationRequest empty{{}, {}};
  EXPECT_FALSE(Generator(*model_, tokenizer_.get()).Generate({&empty, 1}).ok());
  GenerationRequest zero = Request("a", {.max_tokens = 0});
  EXPECT_FALSE(Generator(*model_, tokenizer_.get()).Generate({&zero, 1}).ok());
}

}  // namespace
}  // namespace flatfleet::engine
