// The weights of a Llama or Mixtral model, prepared for a backend: linear layers as backend
// handles, norms and the embedding table as float32.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/tensor.h"
#include "kernels/backend.h"
#include "worker/model/tensor_parallel.h"
#include "worker/model/weight_source.h"

namespace flatfleet::engine {

struct ExpertLayerWeights {
  std::unique_ptr<kernels::LinearWeight> gate;  // w1
  std::unique_ptr<kernels::LinearWeight> up;    // w3
  std::unique_ptr<kernels::LinearWeight> down;  // w2
};

struct DecoderLayerWeights {
  std::unique_ptr<kernels::WeightTensor> input_norm;  // [1, hidden]
  std::unique_ptr<kernels::WeightTensor> post_attention_norm;
  // q_proj, k_proj and v_proj stacked into one [q_size + 2 * kv_size, hidden] projection: one
  // GEMM (and one thread-pool round trip) instead of three.
  std::unique_ptr<kernels::LinearWeight> qkv_proj, o_proj;
  // Dense MLP (Llama): gate_proj and up_proj stacked likewise into [2 * intermediate, hidden].
  std::unique_ptr<kernels::LinearWeight> gate_up_proj, down_proj;
  // Sparse MoE (Mixtral).
  std::unique_ptr<kernels::LinearWeight> router;
  std::vector<ExpertLayerWeights> experts;
  std::vector<kernels::ExpertWeights> expert_views;  // borrowed pointers into `experts`
};

// Bytes a rank obtained from its weight source, counted as float32 (4 per element whatever the
// stored type), split by how they are distributed.
struct WeightLoadStats {
  int64_t sharded_bytes = 0;     // slices of split tensors (the whole tensor when unsharded)
  int64_t replicated_bytes = 0;  // held whole (norms, router; row-parallel biases on rank 0)
};

// A prepared linear layer of the model and how it was requested from the weight source (its
// name, stacked checkpoint tensors and this rank's share); `handle` is owned by LlamaWeights.
struct NamedLinear {
  LinearLayerRequest request;
  const kernels::LinearWeight* handle = nullptr;
};

// On a tensor-parallel rank (layout.sharded()) the projections hold only that rank's slice:
// qkv_proj its query heads' and KV heads' rows, o_proj their input columns, gate_up_proj and
// every expert's gate/up its intermediate rows, down_proj (and expert down) their columns;
// row-parallel biases are held by rank 0 alone.
struct LlamaWeights {
  // [vocab, hidden]; when sharded, the rows of layout.vocab (ids outside it look up a zero row).
  std::unique_ptr<kernels::WeightTensor> embed_tokens;
  std::vector<DecoderLayerWeights> layers;
  std::unique_ptr<kernels::WeightTensor> final_norm;
  std::unique_ptr<kernels::LinearWeight> lm_head;  // the embedding when tied; layout.vocab rows
  TensorParallelLayout layout;
  WeightLoadStats load_stats;
  // Every linear layer in load order (a quantized checkpoint is written from this list).
  std::vector<NamedLinear> linears;
};

// Every tensor the model reads, with its expected shape, in checkpoint naming. `lm_head.weight`
// is listed only for untied embeddings.
std::vector<std::pair<std::string, std::vector<int64_t>>> LlamaTensorShapes(
    const ModelConfig& config);

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const ModelConfig& config, const WeightSource& source,
                                              kernels::Backend& backend);
// Called after each decoder layer is prepared (and once more at the end, with
// layers_done == layers_total), with the weight bytes obtained so far counted as float32.
using WeightLoadProgress =
    std::function<void(int64_t layers_done, int64_t layers_total, int64_t bytes)>;

// Loads only `layout`'s share (PlanTensorParallel).
absl::StatusOr<LlamaWeights> LoadLlamaWeights(const ModelConfig& config, const WeightSource& source,
                                              kernels::Backend& backend,
                                              const TensorParallelLayout& layout,
                                              const WeightLoadProgress& progress = nullptr);

}  // namespace flatfleet::engine
