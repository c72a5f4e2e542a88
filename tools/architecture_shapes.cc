#include "tools/architecture_shapes.h"

#include <string>

#include "absl/strings/str_format.h"

namespace flatfleet::tools {

absl::StatusOr<ModelConfig> ArchitectureShape(std::string_view arch) {
  ModelConfig c;
  c.model_type = "llama";
  c.rms_norm_eps = 1e-5;
  if (arch == "llama-3-8b" || arch == "llama-3-70b") {
    const bool big = arch == "llama-3-70b";
    c.vocab_size = 128256;
    c.hidden_size = big ? 8192 : 4096;
    c.intermediate_size = big ? 28672 : 14336;
    c.num_hidden_layers = big ? 80 : 32;
    c.num_attention_heads = big ? 64 : 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.rope_theta = 500000.0;
    c.max_position_embeddings = 8192;
    return c;
  }
  if (arch == "mixtral-8x7b") {
    c.model_type = "mixtral";
    c.vocab_size = 32000;
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.rope_theta = 1e6;
    c.max_position_embeddings = 32768;
    c.num_local_experts = 8;
    c.num_experts_per_tok = 2;
    return c;
  }
  if (arch == "tiny") {  // llama-tiny's shape
    c.vocab_size = 512;
    c.hidden_size = 256;
    c.intermediate_size = 688;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
    c.head_dim = 32;
    c.max_position_embeddings = 2048;
    return c;
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "--arch '%s': expected llama-3-8b, llama-3-70b, mixtral-8x7b or tiny", std::string(arch)));
}

}  // namespace flatfleet::tools
