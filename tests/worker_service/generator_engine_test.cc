// The Generator adapter honours the InferenceEngine contract and matches Generator itself.
#include "worker/serving/generator_engine.h"

#include <map>

#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "worker/model/demo_model.h"

namespace flatfleet::engine {
namespace {

class GeneratorEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = MakeDemoModel(kernels::cpu::DefaultCpuBackend()).value().release();
    tokenizer_ = tokenizer::MakeByteTokenizer().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }

  static EngineRequest Request(const std::string& id, const std::string& prompt,
                               int64_t max_tokens) {
    EngineRequest request;
    request.id = id;
    request.prompt = tokenizer_->Encode(prompt, true).value();
    request.params.max_tokens = max_tokens;
    return request;
  }

  static LlamaModel* model_;
  static tokenizer::Tokenizer* tokenizer_;
};

LlamaModel* GeneratorEngineTest::model_ = nullptr;
tokenizer::Tokenizer* GeneratorEngineTest::tokenizer_ = nullptr;

TEST_F(GeneratorEngineTest, ResultsEqualGeneratorRunDirectly) {
  GeneratorEngine engine(*model_, tokenizer_);
  const std::vector<EngineRequest> requests = {Request("a", "Hello", 5), Request("b", "xyz", 7),
                                               Request("c", "The quick brown fox", 3)};
  for (const EngineRequest& request : requests) ASSERT_TRUE(engine.Submit(request).ok());
  EXPECT_FALSE(engine.Idle());
  EXPECT_EQ(engine.Stats().waiting_requests, 3);

  std::map<std::string, EngineResult> results;
  for (EngineResult& result : engine.Step()) results[result.id] = std::move(result);
  EXPECT_TRUE(engine.Idle());
  ASSERT_EQ(results.size(), 3u);

  std::vector<GenerationRequest> direct;
  for (const EngineRequest& request : requests) direct.push_back({request.prompt, request.params});
  auto expected = Generator(*model_, tokenizer_).Generate(direct).value();
  int64_t generated = 0;
  int64_t prompted = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const EngineResult& result = results[requests[i].id];
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_EQ(result.result.tokens, expected[i].tokens);
    EXPECT_EQ(result.result.text, expected[i].text);
    EXPECT_EQ(result.result.completion_tokens, expected[i].completion_tokens);
    EXPECT_GT(result.time_to_first_token_seconds, 0);
    EXPECT_LE(result.time_to_first_token_seconds, result.total_seconds);
    generated += result.result.completion_tokens;
    prompted += result.result.prompt_tokens;
  }
  const EngineStats stats = engine.Stats();
  EXPECT_EQ(stats.generated_tokens_total, generated);
  EXPECT_EQ(stats.prompt_tokens_total, prompted);
  EXPECT_EQ(stats.waiting_requests, 0);
}

TEST_F(GeneratorEngineTest, RejectsRequestsThatCanNeverRun) {
  GeneratorEngine engine(*model_, tokenizer_, GeneratorOptions{.max_sequence_length = 32});
  ASSERT_TRUE(engine.Submit(Request("live", "hi", 2)).ok());
  EXPECT_EQ(engine.Submit(Request("live", "hi", 2)).code(), absl::StatusCode::kAlreadyExists);
  EngineRequest empty = Request("empty", "", 2);
  empty.prompt.clear();  // Encode adds BOS even to ""
  EXPECT_EQ(engine.Submit(empty).code(), absl::StatusCode::kInvalidArgument);
  // The byte tokenizer adds BOS: 1 + 2 prompt tokens + 30 > 32 positions.
  EXPECT_EQ(engine.Submit(Request("long", "hi", 30)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Submit(Request("zero", "hi", 0)).code(), absl::StatusCode::kInvalidArgument);
  EngineRequest out_of_vocabulary = Request("oov", "hi", 2);
  out_of_vocabulary.prompt.push_back(static_cast<int32_t>(model_->config().vocab_size));
  EXPECT_EQ(engine.Submit(out_of_vocabulary).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Stats().waiting_requests, 1);  // rejected ones queued nothing
}

TEST_F(GeneratorEngineTest, CancelledRequestsComeBackCancelledAndFreeTheirIds) {
  GeneratorEngine engine(*model_, tokenizer_);
  ASSERT_TRUE(engine.Submit(Request("keep", "abc", 2)).ok());
  ASSERT_TRUE(engine.Submit(Request("drop", "abc", 2)).ok());
  engine.Cancel("drop");
  engine.Cancel("unknown");  // ignored
  std::map<std::string, EngineResult> results;
  for (EngineResult& result : engine.Step()) results[result.id] = std::move(result);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results["keep"].status.ok());
  EXPECT_EQ(results["drop"].status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(engine.Idle());
  EXPECT_TRUE(engine.Submit(Request("drop", "abc", 2)).ok());  // the id is free again
}

}  // namespace
}  // namespace flatfleet::engine
