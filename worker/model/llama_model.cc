#include "worker/model/llama_model.h"

#include <cmath>
#include <set>

#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "worker/model/contiguous_kv_cache.h"

namespace flatfleet::engine {

// Allocated once per forward pass: fresh multi-megabyte tensors per layer would cost more in
// page faults and zeroing than the layer's arithmetic.
struct LlamaModel::Activations {
  Activations(const ModelConfig& config, int64_t rows)
      : normed({rows, config.hidden_size}),
        qkv({rows, config.q_size() + 2 * config.kv_size()}),
        q({rows, config.q_size()}),
        k({rows, config.kv_size()}),
        v({rows, config.kv_size()}),
        attended({rows, config.q_size()}),
        block_out({rows, config.hidden_size}) {
    if (config.is_moe()) {
      router_logits = Tensor({rows, config.num_local_experts});
    } else {
      gate_up = Tensor({rows, 2 * config.intermediate_size});
      gate = Tensor({rows, config.intermediate_size});
      up = Tensor({rows, config.intermediate_size});
    }
  }

  Tensor normed, qkv, q, k, v, attended, block_out;
  Tensor gate_up, gate, up;  // dense MLP
  Tensor router_logits;      // MoE
};

LlamaModel::LlamaModel(ModelConfig config, LlamaWeights weights, kernels::Backend& backend,
                       ModelOptions options)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      backend_(backend),
      inv_freq_(RopeInverseFrequencies(config_)) {
  if (options.bf16_rotary_frequencies) {
    for (float& frequency : inv_freq_) frequency = BF16ToFloat(FloatToBF16(frequency));
  }
}

std::unique_ptr<KvCache> LlamaModel::NewKvCache(int64_t max_positions_per_sequence) const {
  return std::make_unique<ContiguousKvCache>(config_.num_hidden_layers, config_.kv_size(),
                                             max_positions_per_sequence);
}

absl::StatusOr<Tensor> LlamaModel::Forward(std::span<const SequenceChunk> chunks,
                                           KvCache& cache) const {
  // Validate everything before touching the cache.
  std::set<SequenceId> seen;
  int64_t total_tokens = 0;
  for (const SequenceChunk& chunk : chunks) {
    if (!cache.Contains(chunk.sequence)) {
      return absl::NotFoundError(absl::StrFormat("forward: unknown sequence %d", chunk.sequence));
    }
    if (!seen.insert(chunk.sequence).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("forward: sequence %d appears twice in one batch", chunk.sequence));
    }
    if (chunk.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("forward: sequence %d has no new tokens", chunk.sequence));
    }
    for (int32_t token : chunk.tokens) {
      if (token < 0 || token >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "forward: token id %d is outside the vocabulary [0, %d)", token, config_.vocab_size));
      }
    }
    total_tokens += static_cast<int64_t>(chunk.tokens.size());
  }

  std::vector<int32_t> ids;
  std::vector<int64_t> positions;
  std::vector<int64_t> chunk_starts;
  std::vector<int64_t> logit_rows;
  ids.reserve(total_tokens);
  positions.reserve(total_tokens);
  for (const SequenceChunk& chunk : chunks) {
    const int64_t past = cache.Length(chunk.sequence);
    const int64_t count = static_cast<int64_t>(chunk.tokens.size());
    FF_RETURN_IF_ERROR(cache.Append(chunk.sequence, count));
    const int64_t start = static_cast<int64_t>(ids.size());
    chunk_starts.push_back(start);
    for (int64_t i = 0; i < count; ++i) {
      ids.push_back(chunk.tokens[i]);
      positions.push_back(past + i);
      if (chunk.all_logits || i == count - 1) logit_rows.push_back(start + i);
    }
  }

  const int64_t hidden = config_.hidden_size;
  Tensor x({total_tokens, hidden});
  backend_.Embedding(weights_.embed_tokens, ids, x);
  Activations scratch(config_, total_tokens);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const DecoderLayerWeights& layer = weights_.layers[l];
    AttentionBlock(layer, l, x, positions, chunks, chunk_starts, cache, scratch);
    FeedForwardBlock(layer, x, scratch);
  }

  // Only the rows whose logits were asked for go through the final norm and LM head.
  const int64_t rows = static_cast<int64_t>(logit_rows.size());
  Tensor selected({rows, hidden});
  backend_.GatherRows(x, logit_rows, selected);
  Tensor normed({rows, hidden});
  backend_.RmsNorm(selected, weights_.final_norm.span(), static_cast<float>(config_.rms_norm_eps),
                   normed);
  Tensor logits({rows, config_.vocab_size});
  backend_.Linear(*weights_.lm_head, normed, logits);
  return logits;
}

void LlamaModel::AttentionBlock(const DecoderLayerWeights& layer, int64_t layer_index, Tensor& x,
                                std::span<const int64_t> positions,
                                std::span<const SequenceChunk> chunks,
                                std::span<const int64_t> chunk_starts, KvCache& cache,
                                Activations& scratch) const {
  const float eps = static_cast<float>(config_.rms_norm_eps);
  Tensor& h = scratch.normed;
  Tensor& q = scratch.q;
  Tensor& k = scratch.k;
  Tensor& v = scratch.v;
  backend_.RmsNorm(x, layer.input_norm.span(), eps, h);
  backend_.Linear(*layer.qkv_proj, h, scratch.qkv);
  Tensor* const qkv_parts[] = {&q, &k, &v};
  backend_.SplitColumns(scratch.qkv, qkv_parts);
  backend_.Rotary(q, config_.num_attention_heads, config_.head_dim, positions, inv_freq_);
  backend_.Rotary(k, config_.num_key_value_heads, config_.head_dim, positions, inv_freq_);

  std::vector<std::vector<kernels::KvBlock>> blocks(chunks.size());
  std::vector<kernels::AttentionSequence> sequences(chunks.size());
  for (size_t c = 0; c < chunks.size(); ++c) {
    const int64_t start = chunk_starts[c];
    const int64_t count = static_cast<int64_t>(chunks[c].tokens.size());
    cache.Write(layer_index, chunks[c].sequence, positions[start], count, k.row(start),
                v.row(start));
    blocks[c] = cache.Blocks(layer_index, chunks[c].sequence);
    sequences[c] = {start, count, positions[start] + count, blocks[c]};
  }
  const kernels::AttentionShape shape{config_.num_attention_heads, config_.num_key_value_heads,
                                      config_.head_dim,
                                      1.0f / std::sqrt(static_cast<float>(config_.head_dim))};
  backend_.Attention(q, sequences, shape, scratch.attended);
  backend_.Linear(*layer.o_proj, scratch.attended, scratch.block_out);
  backend_.Add(x, scratch.block_out);
}

void LlamaModel::FeedForwardBlock(const DecoderLayerWeights& layer, Tensor& x,
                                  Activations& scratch) const {
  Tensor& h = scratch.normed;
  Tensor& out = scratch.block_out;
  backend_.RmsNorm(x, layer.post_attention_norm.span(), static_cast<float>(config_.rms_norm_eps),
                   h);
  if (config_.is_moe()) {
    Tensor& router_logits = scratch.router_logits;
    backend_.Linear(*layer.router, h, router_logits);
    backend_.SparseMoe(h, router_logits, layer.expert_views, config_.num_experts_per_tok, out);
  } else {
    Tensor& gate = scratch.gate;
    Tensor& up = scratch.up;
    backend_.Linear(*layer.gate_up_proj, h, scratch.gate_up);
    Tensor* const gate_up_parts[] = {&gate, &up};
    backend_.SplitColumns(scratch.gate_up, gate_up_parts);
    backend_.SiluMul(gate, up, gate);
    backend_.Linear(*layer.down_proj, gate, out);
  }
  backend_.Add(x, out);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> BuildLlamaModel(const ModelConfig& config,
                                                            const WeightSource& source,
                                                            kernels::Backend& backend,
                                                            ModelOptions options) {
  if (config.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("config: head_dim %d must be even for rotary embeddings", config.head_dim));
  }
  FF_ASSIGN_OR_RETURN(LlamaWeights weights, LoadLlamaWeights(config, source, backend));
  return std::make_unique<LlamaModel>(config, std::move(weights), backend, options);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadLlamaModel(const std::filesystem::path& dir,
                                                           kernels::Backend& backend,
                                                           ModelOptions options) {
  FF_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  FF_ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, WeightStore::Open(dir));
  CheckpointWeightSource source(std::move(store));
  return BuildLlamaModel(config, source, backend, options);
}

}  // namespace flatfleet::engine
