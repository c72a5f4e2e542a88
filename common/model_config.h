// Hugging Face `config.json` for Llama- and Mixtral-family models.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flatfleet {

struct RopeScaling {
  // "default", "llama3" or "linear".
  std::string type = "default";
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;  // "llama" or "mixtral"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // per expert for Mixtral
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // == heads (MHA), < heads (GQA), 1 (MQA)
  int64_t head_dim = 0;             // explicit, or hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  // Mixtral: routed experts; 0 for dense models.
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t bos_token_id = -1;  // -1 when absent
  std::vector<int64_t> eos_token_ids;

  bool is_moe() const { return num_local_experts > 0; }
  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }
};

// Parses and validates config.json text. Unknown model types, missing or non-positive sizes,
// heads not dividing evenly, or unsupported rope scaling fail with a message naming
// `source_name` and the field.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source_name);
// Reads `dir/config.json` (or the file itself when given a file).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& dir_or_file);

// Rotary inverse frequencies (head_dim / 2 values) with rope scaling applied, computed in
// float32 as Hugging Face transformers does.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace flatfleet
