// Small random Llama/Mixtral models for engine tests.
#pragma once

#include <memory>

#include "common/model_config.h"
#include "kernels/cpu/cpu_backend.h"
#include "worker/model/llama_model.h"
#include "worker/model/weight_source.h"

namespace flatfleet::engine::testing {

inline ModelConfig SmallLlamaConfig() {
  ModelConfig config;
  config.model_type = "llama";
  config.vocab_size = 97;
  config.hidden_size = 64;
  config.intermediate_size = 96;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 16;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 10000.0;
  config.max_position_embeddings = 256;
  config.eos_token_ids = {2};
  return config;
}

inline ModelConfig SmallMixtralConfig() {
  ModelConfig config = SmallLlamaConfig();
  config.model_type = "mixtral";
  config.num_local_experts = 4;
  config.num_experts_per_tok = 2;
  return config;
}

inline std::unique_ptr<LlamaModel> RandomModel(const ModelConfig& config, uint64_t seed = 7) {
  RandomWeightSource source(seed, 0.1f);
  auto model = BuildLlamaModel(config, source, kernels::cpu::DefaultCpuBackend());
  return model.ok() ? *std::move(model) : nullptr;
}

}  // namespace flatfleet::engine::testing
