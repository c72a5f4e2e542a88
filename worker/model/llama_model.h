// The Llama / Mixtral decoder (pre-norm, RoPE, GQA attention, SwiGLU MLP or sparse MoE),
// written only against kernels::Backend. One Forward call runs a batch of sequences, each
// contributing a chunk of new tokens (a whole prompt, part of one, or a single decode token).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/tensor.h"
#include "kernels/backend.h"
#include "worker/collectives/all_reduce_stats.h"
#include "worker/collectives/compressed_all_reducer.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_weights.h"
#include "worker/model/tensor_parallel.h"

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
  // Run as one rank of a tensor-parallel group (docs/TENSOR_PARALLEL.md). The default (size 1,
  // no communicator) is the single-process model, bit for bit.
  TensorParallelContext tensor_parallel;
  // Told after each decoder layer's weights are on the backend (a progress line for big models).
  WeightLoadProgress load_progress;
};

// A tensor-parallel rank's collective traffic since the model was built.
struct TensorParallelStats {
  // After every o_proj and down_proj (INT8 when compression is on): the traffic to watch.
  collectives::AllReduceStats layer_all_reduce;
  // Of the vocab-parallel embedding, once per forward; always FP32 (it is exact).
  collectives::AllReduceStats embedding_all_reduce;
  // Of the LM head's vocabulary slices, once per forward.
  int64_t logits_all_gather_calls = 0;
  int64_t logits_all_gather_bytes = 0;  // sent by this rank: (size - 1) padded slices
  double logits_all_gather_seconds = 0.0;
};

class LlamaModel {
 public:
  // `context` is the model's own execution context on `backend` (its stream and workspace);
  // `inv_freq` the rotary frequencies prepared on it.
  LlamaModel(ModelConfig config, LlamaWeights weights, kernels::Backend& backend,
             std::unique_ptr<kernels::ExecutionContext> context,
             std::unique_ptr<kernels::WeightTensor> inv_freq, ModelOptions options = {});

  // The whole model's config, also on a tensor-parallel rank (see tensor_parallel_layout()).
  const ModelConfig& config() const { return config_; }
  kernels::Backend& backend() const { return backend_; }

  // This rank's share of the model (everything when not tensor-parallel).
  const TensorParallelLayout& tensor_parallel_layout() const { return weights_.layout; }
  const WeightLoadStats& weight_load_stats() const { return weights_.load_stats; }
  // Every prepared linear layer by name (quantized checkpoints are written from it).
  const std::vector<NamedLinear>& linears() const { return weights_.linears; }
  TensorParallelStats tensor_parallel_stats() const;
  // The model's execution context (benchmarks read its op timings and workspace use).
  kernels::ExecutionContext& execution_context() const { return *context_; }

  // Floats per cached position and layer for each of keys and values: this rank's KV heads
  // times head_dim (config().kv_size() when not tensor-parallel). Size external caches by it.
  int64_t kv_row_size() const;

  // A paged cache on this model's backend for up to `max_sequences` sequences of at most
  // `max_positions_per_sequence` positions (this rank's KV heads, the backend's KV dtype). On the
  // host it grows past max_sequences on demand.
  absl::StatusOr<std::unique_ptr<KvCache>> CreateKvCache(int64_t max_positions_per_sequence,
                                                         int64_t max_sequences = 1) const;
  // CreateKvCache for the CPU backends, where it cannot fail for a valid length (aborts else).
  std::unique_ptr<KvCache> NewKvCache(int64_t max_positions_per_sequence,
                                      int64_t max_sequences = 1) const;

  // Sizes the execution context's workspace for steps of up to `max_step_tokens` tokens of which
  // up to `max_logit_rows` produce logits (call at start-up: device arenas never grow on the
  // step path, and a larger step then fails with an error naming both sizes).
  absl::Status ReserveWorkspace(int64_t max_step_tokens, int64_t max_logit_rows) const;
  // The bytes ReserveWorkspace reserves.
  int64_t WorkspaceBytes(int64_t step_tokens, int64_t logit_rows) const;

  // Runs the chunks (at most one per sequence), appending their keys and values to `cache`.
  // Returns logits [rows, vocab]: per chunk in order, one row per token when all_logits,
  // else one row for its last token. A tensor-parallel rank returns the full logits too; all
  // ranks must make the same calls in the same order, and calls must not overlap.
  absl::StatusOr<Tensor> Forward(std::span<const SequenceChunk> chunks, KvCache& cache) const;

  // Forward and sampling on the backend (backend().samples_on_device()): one params entry per
  // chunk (each chunk's last token is sampled; all_logits must be off), penalties, min_tokens
  // masking and top logprobs included (kernels::DeviceSamplingParams). Only the ids come back
  // to the host, with, when given: `logprobs` (the ids' log-probabilities under the raw logits,
  // one per chunk), `top_logprobs` (kernels::kMaxDeviceTopLogprobs per chunk, filled for the
  // chunks whose params ask), and the logits rows listed in `host_rows` (chunk indices) copied
  // into `host_logits` [host_rows, vocab] for a caller that samples some rows itself.
  absl::StatusOr<std::vector<int32_t>> ForwardAndSample(
      std::span<const SequenceChunk> chunks, KvCache& cache,
      std::span<const kernels::DeviceSamplingParams> params, std::vector<float>* logprobs = nullptr,
      std::span<const int64_t> host_rows = {}, Tensor* host_logits = nullptr,
      std::vector<kernels::DeviceTopLogprob>* top_logprobs = nullptr) const;

 private:
  struct Activations;  // per-forward scratch views from the context's workspace
  // Widths of this rank's activations.
  struct ActivationSizes {
    int64_t hidden, q_size, kv_size, intermediate, experts, vocab;
    // Device tensor parallelism: the gathered logits' width (the whole vocabulary) and the
    // gather's scratch floats per logits row; 0 otherwise.
    int64_t gathered_vocab = 0, gather_scratch_cols = 0;
  };
  ActivationSizes Sizes() const;

  // Runs the chunks and leaves the logits rows (float32, in the backend's memory) in the
  // workspace.
  absl::StatusOr<runtime::TensorView> RunForward(std::span<const SequenceChunk> chunks,
                                                 KvCache& cache) const;
  absl::Status AttentionBlock(const DecoderLayerWeights& layer, int64_t layer_index, KvCache& cache,
                              Activations& scratch) const;
  absl::Status FeedForwardBlock(const DecoderLayerWeights& layer, Activations& scratch) const;
  absl::Status AllReduceOnHost(const runtime::TensorView& partial_sums,
                               collectives::CompressedAllReducer& reducer) const;
  // The all-reduce of a row-parallel layer's partial sums (or, `exact`, of the vocab-parallel
  // embedding rows): on the device through device_collectives_ when the backend is a GPU, else on
  // the host through `reducer`.
  absl::Status AllReducePartialSums(const runtime::TensorView& partial_sums,
                                    collectives::CompressedAllReducer* reducer, bool exact) const;
  // Device tensor parallelism: every rank's LM-head slice gathered into `full` on the device.
  absl::Status GatherLogitsOnDevice(const runtime::TensorView& local,
                                    const runtime::TensorView& scratch,
                                    const runtime::TensorView& full) const;
  bool device_tensor_parallel() const { return device_collectives_ != nullptr; }

  // Tensor-parallel steps (only called when the weights are sharded).
  absl::Status CheckTensorParallelGroup() const;
  absl::StatusOr<Tensor> GatherLogits(const Tensor& local_logits) const;

  ModelConfig config_;
  LlamaWeights weights_;
  kernels::Backend& backend_;
  // Mutated by the const Forward, which is never run concurrently.
  std::unique_ptr<kernels::ExecutionContext> context_;
  std::unique_ptr<kernels::WeightTensor> inv_freq_;
  // Decode batches up to this size run as CUDA graphs (one per power-of-two bucket), where the
  // backend supports them; a bucket is captured on its second step.
  static constexpr int64_t kMaxGraphBatch = 256;
  mutable std::set<int64_t> graph_buckets_seen_;
  mutable int64_t graph_pool_serial_ = -1;
  collectives::Communicator* communicator_ = nullptr;
  collectives::StreamCollectives* device_collectives_ = nullptr;  // sharded, device backend
  // Collective state mutated by the const Forward (which is never run concurrently).
  mutable std::unique_ptr<collectives::CompressedAllReducer> layer_reducer_;
  mutable std::unique_ptr<collectives::CompressedAllReducer> embedding_reducer_;
  mutable TensorParallelStats gather_stats_;  // only the all-gather fields
};

// Reads config.json and the safetensors weights of `dir` for `backend` (only this rank's slices
// when options.tensor_parallel is set).
absl::StatusOr<std::unique_ptr<LlamaModel>> LoadLlamaModel(const std::filesystem::path& dir,
                                                           kernels::Backend& backend,
                                                           ModelOptions options = {});

// Builds a model from any weight source (random weights for the demo and tests).
absl::StatusOr<std::unique_ptr<LlamaModel>> BuildLlamaModel(const ModelConfig& config,
                                                            const WeightSource& source,
                                                            kernels::Backend& backend,
                                                            ModelOptions options = {});

}  // namespace flatfleet::engine
