// ParseModelConfig: both rope spellings, attention layouts, defaults, and one test per kind of
// invalid config.json, each checking that the error names the source and the field.
#include "common/model_config.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/checkpoint_test_util.h"

namespace flatfleet {
namespace {

using ::flatfleet::testing::HasError;
using Json = nlohmann::json;
constexpr char kSource[] = "case/config.json";
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

Json LlamaJson() {
  return Json::parse(R"({
    "model_type": "llama", "vocab_size": 1000, "hidden_size": 512, "intermediate_size": 1376,
    "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "hidden_act": "silu",
    "bos_token_id": 1, "eos_token_id": 2, "rope_theta": 500000.0})");
}

absl::StatusOr<ModelConfig> Parse(const Json& json) {
  return ParseModelConfig(json.dump(), kSource);
}

TEST(ModelConfigTest, ParsesLlamaWithGroupedQueryAttention) {
  auto config = Parse(LlamaJson());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "llama");
  EXPECT_EQ(config->head_dim, 64);
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_EQ(config->q_size(), 512);
  EXPECT_EQ(config->kv_size(), 128);
  EXPECT_DOUBLE_EQ(config->rope_theta, 500000.0);
  EXPECT_EQ(config->rope_scaling.type, "default");
  EXPECT_EQ(config->max_position_embeddings, 4096);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->is_moe());
}

TEST(ModelConfigTest, AbsentKeyValueHeadsMeansMultiHead) {
  Json json = LlamaJson();
  json.erase("num_key_value_heads");
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 8);
  json["num_key_value_heads"] = nullptr;
  config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 8);
}

TEST(ModelConfigTest, MultiQueryAttention) {
  Json json = LlamaJson();
  json["num_key_value_heads"] = 1;
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 1);
  EXPECT_EQ(config->kv_size(), 64);
}

TEST(ModelConfigTest, ExplicitAndNullHeadDim) {
  Json json = LlamaJson();
  json["head_dim"] = 128;  // q_size 1024 != hidden_size, as in some Mistral models
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_EQ(config->q_size(), 1024);
  json["head_dim"] = nullptr;
  config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->head_dim, 64);
  // With an explicit head_dim, hidden_size need not divide by the heads.
  json["hidden_size"] = 500;
  json["head_dim"] = 64;
  EXPECT_TRUE(Parse(json).ok());
}

TEST(ModelConfigTest, TiedEmbeddingsAndBiases) {
  Json json = LlamaJson();
  json["tie_word_embeddings"] = true;
  json["attention_bias"] = true;
  json["mlp_bias"] = true;
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_TRUE(config->attention_bias);
  EXPECT_TRUE(config->mlp_bias);
  json["tie_word_embeddings"] = "yes";
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "tie_word_embeddings"}));
}

TEST(ModelConfigTest, TokenIds) {
  Json json = LlamaJson();
  json["eos_token_id"] = {128001, 128008, 128009};
  json.erase("bos_token_id");
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(config->bos_token_id, -1);
  json["eos_token_id"] = nullptr;
  config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->eos_token_ids.empty());
  json["eos_token_id"] = {1, "two"};
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "eos_token_id"}));
  json["eos_token_id"] = -3;
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "eos_token_id"}));
}

TEST(ModelConfigTest, ParsesMixtral) {
  Json json = LlamaJson();
  json["model_type"] = "mixtral";
  json["num_local_experts"] = 8;
  json["num_experts_per_tok"] = 2;
  json["sliding_window"] = nullptr;
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "mixtral");
  EXPECT_TRUE(config->is_moe());
  EXPECT_EQ(config->num_local_experts, 8);
  EXPECT_EQ(config->num_experts_per_tok, 2);
  json["num_experts_per_tok"] = 9;
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "num_experts_per_tok"}));
}

TEST(ModelConfigTest, MistralIsDenseLlama) {
  Json json = LlamaJson();
  json["model_type"] = "mistral";
  json["sliding_window"] = nullptr;
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "llama");
  json["sliding_window"] = 1024;  // below max_position_embeddings: attention would differ
  EXPECT_TRUE(HasError(Parse(json).status(), absl::StatusCode::kUnimplemented,
                       {kSource, "sliding_window"}));
}

TEST(ModelConfigTest, NewAndOldLlama3RopeSpellingsAgree) {
  Json new_spelling = LlamaJson();
  new_spelling.erase("rope_theta");
  new_spelling["rope_parameters"] = {
      {"rope_theta", 500000.0},  {"rope_type", "llama3"},
      {"factor", 32.0},          {"low_freq_factor", 1.0},
      {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  Json old_spelling = LlamaJson();
  old_spelling["rope_scaling"] = {{"rope_type", "llama3"},
                                  {"factor", 32.0},
                                  {"low_freq_factor", 1.0},
                                  {"high_freq_factor", 4.0},
                                  {"original_max_position_embeddings", 8192}};
  for (const Json& json : {new_spelling, old_spelling}) {
    auto config = Parse(json);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_DOUBLE_EQ(config->rope_theta, 500000.0);
    EXPECT_EQ(config->rope_scaling.type, "llama3");
    EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 32.0);
    EXPECT_DOUBLE_EQ(config->rope_scaling.low_freq_factor, 1.0);
    EXPECT_DOUBLE_EQ(config->rope_scaling.high_freq_factor, 4.0);
    EXPECT_EQ(config->rope_scaling.original_max_position_embeddings, 8192);
  }
}

TEST(ModelConfigTest, LinearRopeWithLegacyTypeKey) {
  Json json = LlamaJson();
  json["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  auto config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 4.0);
  json["rope_scaling"] = nullptr;  // null means no scaling
  config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope_scaling.type, "default");
}

TEST(ModelConfigTest, RejectsUnknownRopeType) {
  Json json = LlamaJson();
  json["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_TRUE(
      HasError(Parse(json).status(), kInvalid, {kSource, "rope_scaling.rope_type", "yarn"}));
  json.erase("rope_scaling");
  json["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 4.0}, {"rope_theta", 1e4}};
  EXPECT_TRUE(
      HasError(Parse(json).status(), kInvalid, {kSource, "rope_parameters.rope_type", "dynamic"}));
}

TEST(ModelConfigTest, RejectsIncompleteOrInconsistentLlama3Rope) {
  Json json = LlamaJson();
  json["rope_scaling"] = {{"rope_type", "llama3"},
                          {"factor", 8.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}};
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid,
                       {kSource, "rope_scaling.original_max_position_embeddings"}));
  json["rope_scaling"]["original_max_position_embeddings"] = 8192;
  json["rope_scaling"]["high_freq_factor"] = 1.0;
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "rope_scaling.high_freq_factor"}));
  json["rope_scaling"].erase("factor");
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "rope_scaling.factor"}));
  json["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -2.0}};
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "rope_scaling.factor"}));
  json["rope_scaling"] = "linear";
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "rope_scaling"}));
}

TEST(ModelConfigTest, RejectsUnknownModelType) {
  Json json = LlamaJson();
  json["model_type"] = "gpt2";
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "model_type", "gpt2"}));
  json.erase("model_type");
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "model_type", "missing"}));
}

TEST(ModelConfigTest, RejectsMissingSizes) {
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads"}) {
    SCOPED_TRACE(field);
    Json json = LlamaJson();
    json.erase(field);
    EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, field, "missing"}));
  }
}

TEST(ModelConfigTest, RejectsNonPositiveOrNonIntegerSizes) {
  for (const char* field :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "max_position_embeddings"}) {
    SCOPED_TRACE(field);
    for (const Json& bad : {Json(0), Json(-8), Json(8.5), Json("8"), Json(int64_t{1} << 40)}) {
      Json json = LlamaJson();
      json[field] = bad;
      EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, field})) << bad;
    }
  }
}

TEST(ModelConfigTest, RejectsHeadsNotDividingEvenly) {
  Json json = LlamaJson();
  json["num_key_value_heads"] = 3;
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "num_key_value_heads", "(3)"}));
}

TEST(ModelConfigTest, RejectsHiddenSizeNotDivisibleByHeadsWithoutHeadDim) {
  Json json = LlamaJson();
  json["hidden_size"] = 500;
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "hidden_size", "head_dim"}));
}

TEST(ModelConfigTest, RejectsOddHeadDim) {
  Json json = LlamaJson();
  json["head_dim"] = 63;
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "head_dim"}));
}

TEST(ModelConfigTest, RejectsUnsupportedActivationAndBadEps) {
  Json json = LlamaJson();
  json["hidden_act"] = "gelu";
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "hidden_act", "gelu"}));
  json = LlamaJson();
  json["rms_norm_eps"] = 0;
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "rms_norm_eps"}));
  json = LlamaJson();
  json["rope_theta"] = "big";
  EXPECT_TRUE(HasError(Parse(json).status(), kInvalid, {kSource, "rope_theta"}));
}

TEST(ModelConfigTest, RejectsMalformedJsonAndNonObjects) {
  EXPECT_TRUE(HasError(ParseModelConfig(R"({"model_type": "llama",)", kSource).status(), kInvalid,
                       {kSource, "JSON"}));
  EXPECT_TRUE(HasError(ParseModelConfig("[]", kSource).status(), kInvalid, {kSource, "object"}));
  EXPECT_TRUE(HasError(ParseModelConfig("", kSource).status(), kInvalid, {kSource}));
}

TEST(ModelConfigTest, LoadReportsMissingFile) {
  testing::TemporaryDirectory directory;
  EXPECT_TRUE(HasError(LoadModelConfig(directory.path()).status(), absl::StatusCode::kNotFound,
                       {(directory.path() / "config.json").string()}));
  testing::WriteTextFile(directory.path() / "config.json", LlamaJson().dump());
  auto config = LoadModelConfig(directory.path());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hidden_size, 512);
}

}  // namespace
}  // namespace flatfleet
