// The model against Hugging Face reference fixtures, and the equivalences batching and the KV
// cache must preserve.
#include "worker/model/llama_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/engine/test_models.h"
#include "tests/engine/test_util.h"
#include "worker/generate/generator.h"
#include "worker/model/llama_weights.h"

namespace flatfleet::engine {
namespace {

using testing::RandomModel;
using testing::RelativeError;

std::filesystem::path SharedDir() {
  const char* env = std::getenv("FLATFLEET_SHARED_DIR");
  return env ? env : FLATFLEET_SHARED_DIR;
}

std::vector<int32_t> ReadIds(const SafetensorsFile& file, const std::string& name,
                             int64_t row = 0) {
  const TensorInfo* info = file.Find(name);
  EXPECT_NE(info, nullptr) << name;
  Tensor t = *ToFloat32(*info);
  return std::vector<int32_t>(t.row(row), t.row(row) + t.dim(-1));
}

// Logits [rows, vocab] of whole sequences, all positions, in one batch.
Tensor ForwardAll(const LlamaModel& model, const std::vector<std::vector<int32_t>>& sequences) {
  auto cache = model.NewKvCache(1024);
  std::vector<SequenceChunk> chunks;
  for (const auto& tokens : sequences) chunks.push_back({*cache->AddSequence(), tokens, true});
  auto logits = model.Forward(chunks, *cache);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return *std::move(logits);
}

struct FixtureCase {
  std::string name;
  bool bf16_rope;
  double bound;
};

class FixtureTest : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(FixtureTest, LogitsMatchAndGreedyIsExact) {
  const FixtureCase& c = GetParam();
  const std::filesystem::path dir = SharedDir() / "fixtures" / c.name;
  ModelOptions options;
  options.bf16_rotary_frequencies = c.bf16_rope;
  auto model = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  auto ref = SafetensorsFile::Open(dir / "reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();

  const Tensor expected = *ToFloat32(*(*ref)->Find("logits"));
  std::vector<std::vector<int32_t>> inputs;
  for (int64_t b = 0; b < expected.dim(0); ++b) inputs.push_back(ReadIds(**ref, "input_ids", b));
  const Tensor logits = ForwardAll(**model, inputs);
  ASSERT_EQ(logits.size(), expected.size());
  const double error = RelativeError(logits, expected);
  EXPECT_LE(error, c.bound) << c.name;
  std::printf("%s (%s rotary frequencies): relative logits error %.3e\n", c.name.c_str(),
              c.bf16_rope ? "bf16" : "float32", error);

  GenerationRequest request;
  request.prompt = ReadIds(**ref, "greedy_prompt");
  const std::vector<int32_t> greedy = ReadIds(**ref, "greedy");
  request.params.max_tokens = static_cast<int64_t>(greedy.size());
  request.params.ignore_eos = true;
  auto results = Generator(**model, nullptr).Generate({&request, 1});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].tokens, greedy);
}

// float32 rotary frequencies (what from_pretrained uses) and bf16-rounded ones (how the
// fixtures' references were produced: model.to(bfloat16) also rounds the inv_freq buffer).
INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest,
                         ::testing::Values(FixtureCase{"llama-tiny", false, 1e-4},
                                           FixtureCase{"mixtral-tiny", false, 1e-4},
                                           FixtureCase{"llama-tiny", true, 1e-5},
                                           FixtureCase{"mixtral-tiny", true, 1e-5}),
                         [](const auto& info) {
                           std::string name =
                               info.param.name + (info.param.bf16_rope ? "_bf16rope" : "");
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(n);
  for (auto& t : tokens) t = dist(rng);
  return tokens;
}

class EquivalenceTest : public ::testing::TestWithParam<bool> {
 protected:
  ModelConfig Config() const {
    return GetParam() ? testing::SmallMixtralConfig() : testing::SmallLlamaConfig();
  }
};

TEST_P(EquivalenceTest, BatchOfDifferentLengthsEqualsEachAlone) {
  auto model = RandomModel(Config());
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(11);
  const std::vector<std::vector<int32_t>> sequences = {
      RandomTokens(5, 97, rng), RandomTokens(1, 97, rng), RandomTokens(17, 97, rng),
      RandomTokens(8, 97, rng)};
  const Tensor batched = ForwardAll(*model, sequences);
  int64_t row = 0;
  for (const auto& tokens : sequences) {
    const Tensor alone = ForwardAll(*model, {tokens});
    EXPECT_LE(RelativeError(batched.row(row), alone.data(), alone.size()), 1e-6);
    row += static_cast<int64_t>(tokens.size());
  }
}

TEST_P(EquivalenceTest, IncrementalDecodeWithCacheEqualsFullRecompute) {
  auto model = RandomModel(Config());
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(12);
  const std::vector<int32_t> tokens = RandomTokens(20, 97, rng);
  const Tensor full = ForwardAll(*model, {tokens});
  // Chunks of 7, 1, 5, then single tokens: the last logits row of each step must equal the
  // full pass's row at that position.
  auto cache = model->NewKvCache(64);
  const SequenceId seq = *cache->AddSequence();
  size_t done = 0;
  for (size_t step_size : {7, 1, 5, 1, 1, 1, 1, 1, 1, 1}) {
    std::span<const int32_t> chunk(tokens.data() + done, step_size);
    SequenceChunk c{seq, chunk, false};
    auto logits = model->Forward({&c, 1}, *cache);
    ASSERT_TRUE(logits.ok()) << logits.status();
    done += step_size;
    EXPECT_LE(RelativeError(logits->data(), full.row(done - 1), model->config().vocab_size), 1e-6)
        << "after " << done << " tokens";
  }
  EXPECT_EQ(done, tokens.size());
  EXPECT_EQ(cache->Length(seq), 20);
}

TEST_P(EquivalenceTest, MixedPrefillAndDecodeStepEqualsSeparateRuns) {
  auto model = RandomModel(Config());
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(13);
  const std::vector<int32_t> a = RandomTokens(9, 97, rng);
  const std::vector<int32_t> b = RandomTokens(6, 97, rng);
  const Tensor full_a = ForwardAll(*model, {a});
  const Tensor full_b = ForwardAll(*model, {b});
  auto cache = model->NewKvCache(64);
  const SequenceId sa = *cache->AddSequence();
  const SequenceId sb = *cache->AddSequence();
  SequenceChunk prefill_a{sa, std::span<const int32_t>(a).first(8), false};
  ASSERT_TRUE(model->Forward({&prefill_a, 1}, *cache).ok());
  // One step: the decode of a's 9th token and b's whole prompt.
  std::vector<SequenceChunk> step = {{sa, std::span<const int32_t>(a).subspan(8), false},
                                     {sb, b, true}};
  auto logits = model->Forward(step, *cache);
  ASSERT_TRUE(logits.ok()) << logits.status();
  ASSERT_EQ(logits->dim(0), 1 + 6);
  const int64_t vocab = model->config().vocab_size;
  EXPECT_LE(RelativeError(logits->row(0), full_a.row(8), vocab), 1e-6);
  EXPECT_LE(RelativeError(logits->row(1), full_b.data(), 6 * vocab), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(LlamaAndMixtral, EquivalenceTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Mixtral" : "Llama"; });

TEST(ForwardTest, RejectsBadInput) {
  auto model = RandomModel(testing::SmallLlamaConfig());
  ASSERT_NE(model, nullptr);
  auto cache = model->NewKvCache(8);
  const SequenceId seq = *cache->AddSequence();
  const std::vector<int32_t> out_of_vocab = {1, 97};
  SequenceChunk bad{seq, out_of_vocab, false};
  EXPECT_FALSE(model->Forward({&bad, 1}, *cache).ok());
  const std::vector<int32_t> too_long(9, 1);
  SequenceChunk long_chunk{seq, too_long, false};
  EXPECT_FALSE(model->Forward({&long_chunk, 1}, *cache).ok());
  SequenceChunk unknown{seq + 100, std::span<const int32_t>(too_long).first(1), false};
  EXPECT_FALSE(model->Forward({&unknown, 1}, *cache).ok());
}

// Writes `config` as config.json plus random weights as a bf16 safetensors checkpoint.
void WriteCheckpoint(const ModelConfig& config, const std::filesystem::path& dir,
                     bool drop_lm_head = false) {
  std::filesystem::create_directories(dir);
  std::ofstream json(dir / "config.json");
  json << absl::StrFormat(
      R"({"model_type": "%s", "vocab_size": %d, "hidden_size": %d, "intermediate_size": %d,
          "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d,
          "head_dim": %d, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
          "max_position_embeddings": 256, "tie_word_embeddings": %s, "attention_bias": %s,
          "eos_token_id": 2, "bos_token_id": 1%s})",
      config.model_type, config.vocab_size, config.hidden_size, config.intermediate_size,
      config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
      config.head_dim, config.tie_word_embeddings ? "true" : "false",
      config.attention_bias ? "true" : "false",
      config.is_moe() ? absl::StrFormat(R"(, "num_local_experts": %d, "num_experts_per_tok": %d)",
                                        config.num_local_experts, config.num_experts_per_tok)
                      : "");
  json.close();
  RandomWeightSource source(99, 0.1f);
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, shape] : LlamaTensorShapes(config)) {
    tensors.push_back(FromFloat32(name, *source.Load(name, shape), DType::kBF16));
  }
  if (drop_lm_head) {
    std::erase_if(tensors, [](const TensorToWrite& t) { return t.name == "lm_head.weight"; });
  }
  ASSERT_TRUE(WriteSafetensors(dir / "model.safetensors", tensors).ok());
}

struct VariantCase {
  std::string name;
  ModelConfig config;
};

class VariantTest : public ::testing::TestWithParam<VariantCase> {};

// MQA, tied embeddings, biases and MoE load from disk and agree with the in-memory model
// built from the same (bf16-rounded) weights; decoding with the cache matches recompute.
TEST_P(VariantTest, CheckpointRoundTripAndCacheConsistency) {
  const VariantCase& c = GetParam();
  const auto dir = std::filesystem::temp_directory_path() /
                   absl::StrFormat("flatfleet_engine_%s_%d", c.name, ::getpid());
  WriteCheckpoint(c.config, dir);
  auto loaded = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->config().num_key_value_heads, c.config.num_key_value_heads);

  std::mt19937 rng(14);
  const std::vector<int32_t> tokens = RandomTokens(12, c.config.vocab_size, rng);
  const Tensor full = ForwardAll(**loaded, {tokens});
  for (float v : full.span()) ASSERT_TRUE(std::isfinite(v));
  auto cache = (*loaded)->NewKvCache(32);
  const SequenceId seq = *cache->AddSequence();
  for (size_t i = 0; i < tokens.size(); ++i) {
    SequenceChunk chunk{seq, std::span<const int32_t>(tokens).subspan(i, 1), false};
    auto logits = (*loaded)->Forward({&chunk, 1}, *cache);
    ASSERT_TRUE(logits.ok());
    EXPECT_LE(RelativeError(logits->data(), full.row(i), c.config.vocab_size), 1e-6) << i;
  }
  std::filesystem::remove_all(dir);
}

ModelConfig Mqa() {
  ModelConfig config = testing::SmallLlamaConfig();
  config.num_key_value_heads = 1;
  return config;
}
ModelConfig Tied() {
  ModelConfig config = testing::SmallLlamaConfig();
  config.tie_word_embeddings = true;
  return config;
}
ModelConfig MhaWithBias() {
  ModelConfig config = testing::SmallLlamaConfig();
  config.num_key_value_heads = config.num_attention_heads;
  config.attention_bias = true;
  return config;
}
ModelConfig TiedMqaMixtral() {
  ModelConfig config = testing::SmallMixtralConfig();
  config.num_key_value_heads = 1;
  config.tie_word_embeddings = true;
  return config;
}

INSTANTIATE_TEST_SUITE_P(Configs, VariantTest,
                         ::testing::Values(VariantCase{"mqa", Mqa()}, VariantCase{"tied", Tied()},
                                           VariantCase{"mha_bias", MhaWithBias()},
                                           VariantCase{"mixtral_tied_mqa", TiedMqaMixtral()}),
                         [](const auto& info) { return info.param.name; });

TEST(TiedEmbeddingTest, TiedHeadUsesTheEmbeddingMatrix) {
  ModelConfig config = Tied();
  auto tied = RandomModel(config);
  // The same weights untied, with lm_head drawn as a copy of the embedding: identical logits.
  class CopyHead final : public WeightSource {
   public:
    bool Has(std::string_view) const override { return true; }
    absl::StatusOr<Tensor> Load(std::string_view name,
                                const std::vector<int64_t>& shape) const override {
      return inner_.Load(name == "lm_head.weight" ? "model.embed_tokens.weight" : name, shape);
    }
    RandomWeightSource inner_{7, 0.1f};
  } copy_head;
  config.tie_word_embeddings = false;
  auto untied = BuildLlamaModel(config, copy_head, kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(untied.ok());
  std::mt19937 rng(15);
  const std::vector<int32_t> tokens = RandomTokens(6, config.vocab_size, rng);
  const Tensor a = ForwardAll(*tied, {tokens});
  const Tensor b = ForwardAll(**untied, {tokens});
  EXPECT_EQ(a.vector(), b.vector());
}

TEST(CheckpointTest, MissingLmHeadIsAnErrorNamingIt) {
  const auto dir = std::filesystem::temp_directory_path() /
                   absl::StrFormat("flatfleet_engine_nohead_%d", ::getpid());
  WriteCheckpoint(testing::SmallLlamaConfig(), dir, /*drop_lm_head=*/true);
  auto loaded = LoadLlamaModel(dir, kernels::cpu::DefaultCpuBackend());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("lm_head.weight"), std::string::npos) << loaded.status();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flatfleet::engine
