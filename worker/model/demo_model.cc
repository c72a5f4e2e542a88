#include "worker/model/demo_model.h"

#include "common/tokenizer/byte_tokenizer.h"
#include "worker/model/weight_source.h"

namespace flatfleet::engine {

ModelConfig DemoModelConfig() {
  ModelConfig config;
  config.model_type = "llama";
  config.vocab_size = tokenizer::ByteTokenizer::kVocabSize;
  config.hidden_size = 256;
  config.intermediate_size = 688;
  config.num_hidden_layers = 4;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 2;
  config.head_dim = 32;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 10000.0;
  config.max_position_embeddings = 4096;
  config.bos_token_id = tokenizer::ByteTokenizer::kBosId;
  config.eos_token_ids = {tokenizer::ByteTokenizer::kEosId};
  return config;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> MakeDemoModel(kernels::Backend& backend, uint64_t seed,
                                                          ModelOptions options) {
  RandomWeightSource source(seed);
  return BuildLlamaModel(DemoModelConfig(), source, backend, options);
}

}  // namespace flatfleet::engine
