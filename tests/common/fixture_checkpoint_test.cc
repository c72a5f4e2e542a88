// Loads the shared tiny Llama and Mixtral checkpoints made by Hugging Face transformers.
#include <cmath>
#include <filesystem>

#include "common/model_config.h"
#include "common/safetensors.h"
#include "gtest/gtest.h"

namespace flatfleet {
namespace {

const std::filesystem::path kFixtures = std::filesystem::path(FLATFLEET_SHARED_DIR) / "fixtures";

TEST(FixtureCheckpointTest, LlamaTinyConfig) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(kFixtures / "llama-tiny");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "llama");
  EXPECT_EQ(config->vocab_size, 512);
  EXPECT_EQ(config->hidden_size, 256);
  EXPECT_EQ(config->intermediate_size, 688);
  EXPECT_EQ(config->num_hidden_layers, 4);
  EXPECT_EQ(config->num_attention_heads, 8);
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->head_dim, 32);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(config->rope_theta, 10000.0);
  EXPECT_EQ(config->rope_scaling.type, "default");
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_FALSE(config->is_moe());
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_ids, std::vector<int64_t>{2});
}

TEST(FixtureCheckpointTest, MixtralTinyConfig) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(kFixtures / "mixtral-tiny" / "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_type, "mixtral");
  EXPECT_EQ(config->head_dim, 32);  // null in the file: hidden_size / heads
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(config->rope_theta, 1e6);
  EXPECT_TRUE(config->is_moe());
  EXPECT_EQ(config->num_local_experts, 8);
  EXPECT_EQ(config->num_experts_per_tok, 2);
  EXPECT_EQ(config->intermediate_size, 512);
}

TEST(FixtureCheckpointTest, LlamaTinyWeights) {
  auto store = WeightStore::Open(kFixtures / "llama-tiny");
  ASSERT_TRUE(store.ok()) << store.status();
  auto embed = (*store)->Get("model.embed_tokens.weight");
  ASSERT_TRUE(embed.ok()) << embed.status();
  EXPECT_EQ((*embed)->dtype, DType::kBF16);
  EXPECT_EQ((*embed)->shape, (std::vector<int64_t>{512, 256}));
  auto q_proj = (*store)->LoadF32("model.layers.0.self_attn.q_proj.weight", {256, 256});
  ASSERT_TRUE(q_proj.ok()) << q_proj.status();
  auto k_proj = (*store)->LoadF32("model.layers.3.self_attn.k_proj.weight", {128, 256});
  ASSERT_TRUE(k_proj.ok()) << k_proj.status();
  auto norm = (*store)->LoadF32("model.norm.weight", {256});
  ASSERT_TRUE(norm.ok()) << norm.status();
  // Real weights: finite and not all equal.
  float min_value = q_proj->vector()[0], max_value = min_value;
  for (float value : q_proj->vector()) {
    ASSERT_TRUE(std::isfinite(value));
    min_value = std::min(min_value, value);
    max_value = std::max(max_value, value);
  }
  EXPECT_LT(min_value, max_value);

  auto wrong_shape = (*store)->LoadF32("model.norm.weight", {255});
  EXPECT_EQ(wrong_shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_shape.status().message().find("model.norm.weight"), std::string::npos);
  EXPECT_NE(wrong_shape.status().message().find("[255]"), std::string::npos);
  auto missing = (*store)->Get("model.layers.4.mlp.up_proj.weight");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("model.layers.4.mlp.up_proj.weight"),
            std::string::npos);
}

TEST(FixtureCheckpointTest, MixtralTinyWeights) {
  auto store = WeightStore::Open(kFixtures / "mixtral-tiny" / "model.safetensors");
  ASSERT_TRUE(store.ok()) << store.status();
  auto embed = (*store)->Get("model.embed_tokens.weight");
  ASSERT_TRUE(embed.ok()) << embed.status();
  EXPECT_EQ((*embed)->dtype, DType::kBF16);
  EXPECT_EQ((*embed)->shape, (std::vector<int64_t>{512, 256}));
  int expert_tensors = 0;
  for (const std::string& name : (*store)->TensorNames()) {
    if (name.find(".experts.") != std::string::npos) ++expert_tensors;
  }
  EXPECT_GT(expert_tensors, 0);
  // Every tensor converts.
  for (const std::string& name : (*store)->TensorNames()) {
    auto tensor = ToFloat32(*(*store)->Find(name));
    ASSERT_TRUE(tensor.ok()) << tensor.status();
    EXPECT_EQ(tensor->shape(), (*store)->Find(name)->shape);
  }
}

}  // namespace
}  // namespace flatfleet
