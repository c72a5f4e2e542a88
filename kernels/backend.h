// The op interface the model code is written against. The float32 CPU backend
// (kernels/cpu/cpu_backend.h) defines the reference numerics; quantized CPU and CUDA backends
// implement the same ops. Weights are prepared once into backend-owned handles so that each
// backend can pack or quantize them its own way.
//
// Activations are row-major float32 `Tensor`s viewed as [rows, cols]; every op expects its
// outputs to be allocated with the right shape by the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/tensor.h"

namespace flatfleet::kernels {

// A linear layer's weight [out_features, in_features] (and optional bias [out_features]),
// in whatever layout the backend prefers.
class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }

 protected:
  LinearWeight(int64_t out_features, int64_t in_features)
      : out_features_(out_features), in_features_(in_features) {}

 private:
  int64_t out_features_;
  int64_t in_features_;
};

// A run of consecutive cached positions of one sequence in one layer. Rows are
// [num_kv_heads * head_dim] values; a contiguous cache yields one block, a paged cache many.
// A float32 cache sets keys/values. An INT8 cache (keys == nullptr) sets the codes and one FP16
// scale per position and KV head ([num_positions][num_kv_heads]); an element is
// scale * code (kernels/cpu/kv_quantization.h).
struct KvBlock {
  const float* keys = nullptr;
  const float* values = nullptr;
  int64_t num_positions = 0;
  const int8_t* key_codes = nullptr;
  const int8_t* value_codes = nullptr;
  const uint16_t* key_scales = nullptr;
  const uint16_t* value_scales = nullptr;
};

// One sequence's share of a batched attention call. Its queries are rows
// [query_begin, query_begin + num_queries) of q and are the last `num_queries` of its
// `context_length` positions (causal: query i sees positions <= context_length - num_queries + i).
struct AttentionSequence {
  int64_t query_begin = 0;
  int64_t num_queries = 0;
  int64_t context_length = 0;
  std::span<const KvBlock> blocks;  // cover at least context_length positions, in order
};

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // query head h reads kv head h / (num_heads / num_kv_heads)
  int64_t head_dim = 0;
  float scale = 0;  // usually 1 / sqrt(head_dim)
};

// One routed expert of a sparse MoE block: down(silu(gate(x)) * up(x)).
struct ExpertWeights {
  const LinearWeight* gate = nullptr;
  const LinearWeight* up = nullptr;
  const LinearWeight* down = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // `weight` is [out, in]; `bias` is [out] or null.
  virtual std::unique_ptr<LinearWeight> PrepareLinear(const Tensor& weight, const Tensor* bias) = 0;
  // y[m, out] = x[m, in] * weight^T (+ bias).
  virtual void Linear(const LinearWeight& weight, const Tensor& x, Tensor& y) = 0;

  // y = x / sqrt(mean(x^2) + eps) * weight, per row.
  virtual void RmsNorm(const Tensor& x, std::span<const float> weight, float eps, Tensor& y) = 0;

  // Rotary position embedding in place on x [rows, num_heads * head_dim] with Hugging Face's
  // rotate_half pairing (i, i + head_dim / 2); row r is at position positions[r].
  virtual void Rotary(Tensor& x, int64_t num_heads, int64_t head_dim,
                      std::span<const int64_t> positions, std::span<const float> inv_freq) = 0;

  // Causal attention of q [rows, num_heads * head_dim] over cached keys/values, for a batch of
  // sequences with different lengths; out has q's shape.
  virtual void Attention(const Tensor& q, std::span<const AttentionSequence> sequences,
                         const AttentionShape& shape, Tensor& out) = 0;

  // out = silu(gate) * up, elementwise.
  virtual void SiluMul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;

  // x += y, elementwise.
  virtual void Add(Tensor& x, const Tensor& y) = 0;

  // out[r] = table[ids[r]]; ids must be in range.
  virtual void Embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& out) = 0;

  // out[r] = x[rows[r]].
  virtual void GatherRows(const Tensor& x, std::span<const int64_t> rows, Tensor& out) = 0;

  // Splits x's columns into consecutive pieces: outputs[i] takes the next outputs[i]->dim(-1)
  // columns of every row (e.g. a fused q/k/v projection into q, k and v).
  virtual void SplitColumns(const Tensor& x, std::span<Tensor* const> outputs) = 0;

  // Sparse MoE (Mixtral): per row, softmax over router_logits [rows, experts], keep the top
  // `top_k`, renormalise their weights to sum 1, and write the weighted sum of those experts'
  // outputs on x to out [rows, hidden].
  virtual void SparseMoe(const Tensor& x, const Tensor& router_logits,
                         std::span<const ExpertWeights> experts, int64_t top_k, Tensor& out) = 0;
};

}  // namespace flatfleet::kernels
