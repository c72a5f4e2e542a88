#include "worker/model/llama_weights.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flatfleet::engine {
namespace {

std::string LayerPrefix(int64_t layer) { return absl::StrCat("model.layers.", layer, "."); }

std::string ExpertPrefix(int64_t layer, int64_t expert) {
  return absl::StrCat(LayerPrefix(layer), "block_sparse_moe.experts.", expert, ".");
}

class Loader {
 public:
  Loader(const WeightSource& source, kernels::Backend& backend)
      : source_(source), backend_(backend) {}

  absl::StatusOr<Tensor> Tensor1(const std::string& name, std::vector<int64_t> shape) {
    return source_.Load(name, shape);
  }

  // Several linear layers of the same input stacked along the output dimension; each entry of
  // `parts` is a name prefix and its number of output rows.
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> StackedLinear(
      const std::vector<std::pair<std::string, int64_t>>& parts, int64_t in, bool with_bias) {
    int64_t out = 0;
    for (const auto& part : parts) out += part.second;
    Tensor weight({out, in});
    Tensor bias({out});
    int64_t row = 0;
    for (const auto& [prefix, rows] : parts) {
      FF_ASSIGN_OR_RETURN(Tensor part_weight, source_.Load(prefix + "weight", {rows, in}));
      std::copy(part_weight.vector().begin(), part_weight.vector().end(), weight.row(row));
      if (with_bias) {
        FF_ASSIGN_OR_RETURN(Tensor part_bias, source_.Load(prefix + "bias", {rows}));
        std::copy(part_bias.vector().begin(), part_bias.vector().end(), bias.data() + row);
      }
      row += rows;
    }
    return backend_.PrepareLinear(weight, with_bias ? &bias : nullptr);
  }

  // `prefix` + "weight" (and "bias" when `with_bias`).
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> Linear(const std::string& prefix,
                                                                int64_t out, int64_t in,
                                                                bool with_bias) {
    FF_ASSIGN_OR_RETURN(Tensor weight, source_.Load(prefix + "weight", {out, in}));
    if (!with_bias) return backend_.PrepareLinear(weight, nullptr);
    FF_ASSIGN_OR_RETURN(Tensor bias, source_.Load(prefix + "bias", {out}));
    return backend_.PrepareLinear(weight, &bias);
  }

 private:
  const WeightSource& source_;
  kernels::Backend& backend_;
};

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> LlamaTensorShapes(
    const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  shapes.push_back({"model.embed_tokens.weight", {config.vocab_size, hidden}});
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    const std::string prefix = LayerPrefix(layer);
    shapes.push_back({prefix + "input_layernorm.weight", {hidden}});
    shapes.push_back({prefix + "post_attention_layernorm.weight", {hidden}});
    const std::string attn = prefix + "self_attn.";
    shapes.push_back({attn + "q_proj.weight", {config.q_size(), hidden}});
    shapes.push_back({attn + "k_proj.weight", {config.kv_size(), hidden}});
    shapes.push_back({attn + "v_proj.weight", {config.kv_size(), hidden}});
    shapes.push_back({attn + "o_proj.weight", {hidden, config.q_size()}});
    if (config.attention_bias) {
      shapes.push_back({attn + "q_proj.bias", {config.q_size()}});
      shapes.push_back({attn + "k_proj.bias", {config.kv_size()}});
      shapes.push_back({attn + "v_proj.bias", {config.kv_size()}});
      shapes.push_back({attn + "o_proj.bias", {hidden}});
    }
    if (config.is_moe()) {
      shapes.push_back(
          {prefix + "block_sparse_moe.gate.weight", {config.num_local_experts, hidden}});
      for (int64_t e = 0; e < config.num_local_experts; ++e) {
        const std::string expert = ExpertPrefix(layer, e);
        shapes.push_back({expert + "w1.weight", {inter, hidden}});
        shapes.push_back({expert + "w2.weight", {hidden, inter}});
        shapes.push_back({expert + "w3.weight", {inter, hidden}});
      }
    } else {
      const std::string mlp = prefix + "mlp.";
      shapes.push_back({mlp + "gate_proj.weight", {inter, hidden}});
      shapes.push_back({mlp + "up_proj.weight", {inter, hidden}});
      shapes.push_back({mlp + "down_proj.weight", {hidden, inter}});
      if (config.mlp_bias) {
        shapes.push_back({mlp + "gate_proj.bias", {inter}});
        shapes.push_back({mlp + "up_proj.bias", {inter}});
        shapes.push_back({mlp + "down_proj.bias", {hidden}});
      }
    }
  }
  shapes.push_back({"model.norm.weight", {hidden}});
  if (!config.tie_word_embeddings)
    shapes.push_back({"lm_head.weight", {config.vocab_size, hidden}});
  return shapes;
}

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const ModelConfig& config, const WeightSource& source,
                                              kernels::Backend& backend) {
  Loader load(source, backend);
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  LlamaWeights weights;
  FF_ASSIGN_OR_RETURN(weights.embed_tokens,
                      load.Tensor1("model.embed_tokens.weight", {config.vocab_size, hidden}));
  weights.layers.resize(config.num_hidden_layers);
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    DecoderLayerWeights& w = weights.layers[layer];
    const std::string prefix = LayerPrefix(layer);
    FF_ASSIGN_OR_RETURN(w.input_norm, load.Tensor1(prefix + "input_layernorm.weight", {hidden}));
    FF_ASSIGN_OR_RETURN(w.post_attention_norm,
                        load.Tensor1(prefix + "post_attention_layernorm.weight", {hidden}));
    const std::string attn = prefix + "self_attn.";
    const bool bias = config.attention_bias;
    FF_ASSIGN_OR_RETURN(w.qkv_proj, load.StackedLinear({{attn + "q_proj.", config.q_size()},
                                                        {attn + "k_proj.", config.kv_size()},
                                                        {attn + "v_proj.", config.kv_size()}},
                                                       hidden, bias));
    FF_ASSIGN_OR_RETURN(w.o_proj, load.Linear(attn + "o_proj.", hidden, config.q_size(), bias));
    if (config.is_moe()) {
      FF_ASSIGN_OR_RETURN(w.router, load.Linear(prefix + "block_sparse_moe.gate.",
                                                config.num_local_experts, hidden, false));
      w.experts.resize(config.num_local_experts);
      for (int64_t e = 0; e < config.num_local_experts; ++e) {
        const std::string expert = ExpertPrefix(layer, e);
        FF_ASSIGN_OR_RETURN(w.experts[e].gate, load.Linear(expert + "w1.", inter, hidden, false));
        FF_ASSIGN_OR_RETURN(w.experts[e].down, load.Linear(expert + "w2.", hidden, inter, false));
        FF_ASSIGN_OR_RETURN(w.experts[e].up, load.Linear(expert + "w3.", inter, hidden, false));
        w.expert_views.push_back(
            {w.experts[e].gate.get(), w.experts[e].up.get(), w.experts[e].down.get()});
      }
    } else {
      const std::string mlp = prefix + "mlp.";
      const bool mlp_bias = config.mlp_bias;
      FF_ASSIGN_OR_RETURN(w.gate_up_proj, load.StackedLinear({{mlp + "gate_proj.", inter},
                                                              {mlp + "up_proj.", inter}},
                                                             hidden, mlp_bias));
      FF_ASSIGN_OR_RETURN(w.down_proj, load.Linear(mlp + "down_proj.", hidden, inter, mlp_bias));
    }
  }
  FF_ASSIGN_OR_RETURN(weights.final_norm, load.Tensor1("model.norm.weight", {hidden}));
  if (config.tie_word_embeddings) {
    weights.lm_head = backend.PrepareLinear(weights.embed_tokens, nullptr);
  } else {
    if (!source.Has("lm_head.weight")) {
      return absl::NotFoundError(
          "lm_head.weight is missing and config.json does not set tie_word_embeddings");
    }
    FF_ASSIGN_OR_RETURN(weights.lm_head, load.Linear("lm_head.", config.vocab_size, hidden, false));
  }
  return weights;
}

}  // namespace flatfleet::engine
