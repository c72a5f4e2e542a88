#include "worker/model/llama_model.h"

#include <chrono>
#include <cmath>
#include <cstddef>
#include <set>

#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "worker/collectives/communicator.h"
#include "worker/model/contiguous_kv_cache.h"

namespace flatfleet::engine {

// Allocated once per forward pass: fresh multi-megabyte tensors per layer would cost more in
// page faults and zeroing than the layer's arithmetic. Sized for this rank's heads and
// intermediate rows (all of them when not tensor-parallel).
struct LlamaModel::Activations {
  Activations(const ModelConfig& config, const TensorParallelLayout& layout, int64_t rows)
      : Activations(config, rows, layout.heads.size() * config.head_dim,
                    layout.kv_heads.size() * config.head_dim, layout.intermediate.size()) {}
  Activations(const ModelConfig& config, int64_t rows, int64_t q_size, int64_t kv_size,
              int64_t intermediate)
      : normed({rows, config.hidden_size}),
        qkv({rows, q_size + 2 * kv_size}),
        q({rows, q_size}),
        k({rows, kv_size}),
        v({rows, kv_size}),
        attended({rows, q_size}),
        block_out({rows, config.hidden_size}) {
    if (config.is_moe()) {
      router_logits = Tensor({rows, config.num_local_experts});
    } else {
      gate_up = Tensor({rows, 2 * intermediate});
      gate = Tensor({rows, intermediate});
      up = Tensor({rows, intermediate});
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
  const TensorParallelContext& tp = options.tensor_parallel;
  if (weights_.layout.sharded() && tp.communicator != nullptr) {
    communicator_ = tp.communicator;
    layer_reducer_ = std::make_unique<collectives::CompressedAllReducer>(
        *communicator_,
        collectives::CompressedAllReduceOptions{tp.compress_all_reduce, tp.compression_block_size});
    embedding_reducer_ = std::make_unique<collectives::CompressedAllReducer>(
        *communicator_, collectives::CompressedAllReduceOptions{false, tp.compression_block_size});
  }
}

int64_t LlamaModel::kv_row_size() const {
  return weights_.layout.kv_heads.size() * config_.head_dim;
}

std::unique_ptr<KvCache> LlamaModel::NewKvCache(int64_t max_positions_per_sequence) const {
  return std::make_unique<ContiguousKvCache>(config_.num_hidden_layers, kv_row_size(),
                                             max_positions_per_sequence);
}

TensorParallelStats LlamaModel::tensor_parallel_stats() const {
  TensorParallelStats stats = gather_stats_;
  if (layer_reducer_ != nullptr) stats.layer_all_reduce = layer_reducer_->stats();
  if (embedding_reducer_ != nullptr) stats.embedding_all_reduce = embedding_reducer_->stats();
  return stats;
}

absl::Status LlamaModel::CheckTensorParallelGroup() const {
  const TensorParallelLayout& layout = weights_.layout;
  if (communicator_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrFormat("forward: rank %d of a %d-way tensor-parallel model has no communicator",
                        layout.rank, layout.size));
  }
  if (communicator_->size() != layout.size || communicator_->rank() != layout.rank) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "forward: weights are sharded for rank %d of %d but the communicator is rank %d of %d",
        layout.rank, layout.size, communicator_->rank(), communicator_->size()));
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::EmbedVocabParallel(std::span<const int32_t> ids, Tensor& x) const {
  const IndexRange vocab = weights_.layout.vocab;
  const int32_t zero_row = static_cast<int32_t>(vocab.size());  // after this rank's rows
  std::vector<int32_t> local_ids(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    local_ids[i] = vocab.Contains(ids[i]) ? static_cast<int32_t>(ids[i] - vocab.begin) : zero_row;
  }
  backend_.Embedding(weights_.embed_tokens, local_ids, x);
  // Exactly one rank contributes each row, so even this FP32 sum is exact.
  return embedding_reducer_->AllReduceSum(absl::MakeSpan(x.vector()));
}

absl::StatusOr<Tensor> LlamaModel::GatherLogits(const Tensor& local_logits) const {
  const TensorParallelLayout& layout = weights_.layout;
  const int64_t rows = local_logits.dim(0);
  const int64_t slot = layout.max_vocab_slice;  // uneven vocab splits are padded to this
  std::vector<float> send(rows * slot, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(local_logits.row(r), local_logits.row(r) + layout.vocab.size(), &send[r * slot]);
  }
  std::vector<float> received(send.size() * layout.size);
  const auto start = std::chrono::steady_clock::now();
  FF_RETURN_IF_ERROR(
      communicator_->AllGather(absl::MakeConstSpan(reinterpret_cast<const std::byte*>(send.data()),
                                                   send.size() * sizeof(float)),
                               absl::MakeSpan(reinterpret_cast<std::byte*>(received.data()),
                                              received.size() * sizeof(float))));
  gather_stats_.logits_all_gather_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  gather_stats_.logits_all_gather_calls += 1;
  gather_stats_.logits_all_gather_bytes +=
      static_cast<int64_t>((layout.size - 1) * send.size() * sizeof(float));
  Tensor logits({rows, config_.vocab_size});
  for (int source = 0; source < layout.size; ++source) {
    const IndexRange vocab = EvenSplit(config_.vocab_size, layout.size, source);
    const float* slice = &received[source * send.size()];
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(slice + r * slot, slice + r * slot + vocab.size(), logits.row(r) + vocab.begin);
    }
  }
  return logits;
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
  const bool sharded = weights_.layout.sharded();
  if (sharded) {
    FF_RETURN_IF_ERROR(CheckTensorParallelGroup());
    // Nothing to exchange (every rank sees the same empty batch).
    if (total_tokens == 0) return Tensor({0, config_.vocab_size});
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
  if (sharded) {
    FF_RETURN_IF_ERROR(EmbedVocabParallel(ids, x));
  } else {
    backend_.Embedding(weights_.embed_tokens, ids, x);
  }
  Activations scratch(config_, weights_.layout, total_tokens);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const DecoderLayerWeights& layer = weights_.layers[l];
    FF_RETURN_IF_ERROR(
        AttentionBlock(layer, l, x, positions, chunks, chunk_starts, cache, scratch));
    FF_RETURN_IF_ERROR(FeedForwardBlock(layer, x, scratch));
  }

  // Only the rows whose logits were asked for go through the final norm and LM head.
  const int64_t rows = static_cast<int64_t>(logit_rows.size());
  Tensor selected({rows, hidden});
  backend_.GatherRows(x, logit_rows, selected);
  Tensor normed({rows, hidden});
  backend_.RmsNorm(selected, weights_.final_norm.span(), static_cast<float>(config_.rms_norm_eps),
                   normed);
  if (sharded) {
    Tensor local_logits({rows, weights_.layout.vocab.size()});
    backend_.Linear(*weights_.lm_head, normed, local_logits);
    return GatherLogits(local_logits);
  }
  Tensor logits({rows, config_.vocab_size});
  backend_.Linear(*weights_.lm_head, normed, logits);
  return logits;
}

absl::Status LlamaModel::AttentionBlock(const DecoderLayerWeights& layer, int64_t layer_index,
                                        Tensor& x, std::span<const int64_t> positions,
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
  // This rank's heads (all of them when not tensor-parallel).
  const int64_t num_heads = weights_.layout.heads.size();
  const int64_t num_kv_heads = weights_.layout.kv_heads.size();
  backend_.Rotary(q, num_heads, config_.head_dim, positions, inv_freq_);
  backend_.Rotary(k, num_kv_heads, config_.head_dim, positions, inv_freq_);

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
  const kernels::AttentionShape shape{num_heads, num_kv_heads, config_.head_dim,
                                      1.0f / std::sqrt(static_cast<float>(config_.head_dim))};
  backend_.Attention(q, sequences, shape, scratch.attended);
  backend_.Linear(*layer.o_proj, scratch.attended, scratch.block_out);
  if (weights_.layout.sharded()) {  // row-parallel o_proj: partial sums
    FF_RETURN_IF_ERROR(layer_reducer_->AllReduceSum(absl::MakeSpan(scratch.block_out.vector())));
  }
  backend_.Add(x, scratch.block_out);
  return absl::OkStatus();
}

absl::Status LlamaModel::FeedForwardBlock(const DecoderLayerWeights& layer, Tensor& x,
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
  if (weights_.layout.sharded()) {  // row-parallel down projections: partial sums
    FF_RETURN_IF_ERROR(layer_reducer_->AllReduceSum(absl::MakeSpan(out.vector())));
  }
  backend_.Add(x, out);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LlamaModel>> BuildLlamaModel(const ModelConfig& config,
                                                            const WeightSource& source,
                                                            kernels::Backend& backend,
                                                            ModelOptions options) {
  if (config.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("config: head_dim %d must be even for rotary embeddings", config.head_dim));
  }
  const TensorParallelContext& tp = options.tensor_parallel;
  FF_ASSIGN_OR_RETURN(TensorParallelLayout layout, PlanTensorParallel(config, tp.rank, tp.size));
  if (tp.size > 1 && tp.communicator == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor parallel: a group of size %d needs a communicator", tp.size));
  }
  if (tp.communicator != nullptr &&
      (tp.communicator->size() != tp.size || tp.communicator->rank() != tp.rank)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor parallel: context says rank %d of %d but the communicator is rank %d of %d",
        tp.rank, tp.size, tp.communicator->rank(), tp.communicator->size()));
  }
  if (tp.compress_all_reduce && tp.compression_block_size <= 0) {
    return absl::InvalidArgumentError("tensor parallel: compression_block_size must be positive");
  }
  FF_ASSIGN_OR_RETURN(LlamaWeights weights, LoadLlamaWeights(config, source, backend, layout));
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
