// The Llama / Mixtral decoder (pre-norm, RoPE, GQA attention, SwiGLU MLP or sparse MoE),
// written only against kernels::Backend. One Forward call runs a batch of sequences, each
// contributing a chunk of new tokens (a whole prompt, part of one, or a single decode token).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/tensor.h"
#include "kernels/backend.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_weights.h"

namespace flatfleet::engine {

// New tokens of one sequence; they follow the sequence's Length() positions already cached.
struct SequenceChunk {
  SequenceId sequence = 0;
  std::span<const int32_t> tokens;
  // Logits for every token of the chunk (scoring) instead of only the last one.
  bool all_logits = false;
};

struct ModelOptions {
  // Round the rotary inverse frequencies to bfloat16, reproducing Hugging Face models that were
  // cast with `model.to(torch.bfloat16)` (which also casts the inv_freq buffer; transformers
  // issue #30709). The shared fixtures' reference logits were made that way. Off: float32
  // frequencies, as `from_pretrained` keeps them.
  bool bf16_rotary_frequencies = false;
};

class LlamaModel {
 public:
  LlamaModel(ModelConfig config, LlamaWeights weights, kernels::Backend& backend,
             ModelOptions options = {});

  const ModelConfig& config() const { return config_; }
  kernels::Backend& backend() const { return backend_; }

  // A cache sized for this model (contiguous per sequence).
  std::unique_ptr<KvCache> NewKvCache(int64_t max_positions_per_sequence) const;

  // Runs the chunks (at most one per sequence), appending their keys and values to `cache`.
  // Returns logits [rows, vocab]: per chunk in order, one row per token when all_logits,
  // else one row for its last token.
  absl::StatusOr<Tensor> Forward(std::span<const SequenceChunk> chunks, KvCache& cache) const;

 private:
  struct Activations;  // per-forward scratch tensors, reused by every layer

  void AttentionBlock(const DecoderLayerWeights& layer, int64_t layer_index, Tensor& x,
                      std::span<const int64_t> positions, std::span<const SequenceChunk> chunks,
                      std::span<const int64_t> chunk_starts, KvCache& cache,
                      Activations& scratch) const;
  void FeedForwardBlock(const DecoderLayerWeights& layer, Tensor& x, Activations& scratch) const;

  ModelConfig config_;
  LlamaWeights weights_;
  kernels::Backend& backend_;
  std::vector<float> inv_freq_;
};

// Reads config.json and the safetensors weights of `dir` for `backend`.
absl::StatusOr<std::unique_ptr<LlamaModel>> LoadLlamaModel(const std::filesystem::path& dir,
                                                           kernels::Backend& backend,
                                                           ModelOptions options = {});

// Builds a model from any weight source (random weights for the demo and tests).
absl::StatusOr<std::unique_ptr<LlamaModel>> BuildLlamaModel(const ModelConfig& config,
                                                            const WeightSource& source,
                                                            kernels::Backend& backend,
                                                            ModelOptions options = {});

}  // namespace flatfleet::engine
