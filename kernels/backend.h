// The op interface the model code is written against. The float32 CPU backend
// (kernels/cpu/cpu_backend.h) defines the reference numerics; quantized CPU and CUDA backends
// implement the same ops. Weights are prepared once into backend-owned handles so that each
// backend can pack or quantize them its own way.
//
// Activations are runtime::TensorViews (runtime/tensor_view.h) in the backend's memory; every
// op expects its outputs to be allocated with the right shape by the caller (from the execution
// context's workspace arena).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "kernels/execution_context.h"
#include "kernels/kv_pool.h"
#include "kernels/weight_tensor.h"
#include "runtime/tensor_view.h"

namespace flatfleet::quant {
struct QuantizedMatrix;      // kernels/cpu/quant/quantized_matrix.h
class RandomizedHadamard;    // kernels/cpu/quant/hadamard.h
struct IntegerScaledWeight;  // kernels/cpu/quant/integer_scale.h
}  // namespace flatfleet::quant

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

// One token a row's penalties or min_tokens mask touch (engine::Sampler::Processed's inputs).
struct DevicePenaltyEntry {
  static constexpr uint32_t kInPrompt = 1;  // the token occurs in the prompt
  static constexpr uint32_t kMasked = 2;    // a stop id held back by min_tokens: -inf
  int32_t token = 0;
  int32_t completion_count = 0;  // occurrences in the completion so far
  uint32_t flags = 0;
};

// One of the most likely tokens of a row, with its log-softmax under the raw logits.
struct DeviceTopLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};
inline constexpr int kMaxDeviceTopLogprobs = 20;  // engine::kMaxTopLogprobs

// Per logit row: how a backend that samples on the device chooses it (engine::SamplingParams).
struct DeviceSamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax, first index on ties)
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;
  uint64_t step = 0;  // tokens the request sampled so far: the draw depends on (seed, step) only
  // Penalties and min_tokens masking (engine::SamplingParams' formulas), applied to a copy of
  // the row before the draw when `penalties` is not empty: each distinct token of the prompt
  // and completion that a penalty touches, and the stop ids while min_tokens holds them back
  // (host memory, read during the call only).
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  std::span<const DevicePenaltyEntry> penalties = {};
  // >= 0: also report the row's this many (<= kMaxDeviceTopLogprobs) most likely tokens.
  int32_t top_logprobs = -1;
};

// A linear layer's weight as the loader hands it over: host memory in the checkpoint's type
// (float32, bfloat16 or float16, memory-mapped or stacked), with the layer's name so that a
// backend can decide per layer (keep the LM head in float, ...) without looking at the values.
struct LinearSource {
  std::string_view name;                           // "model.layers.0.self_attn.qkv_proj", "lm_head"
  runtime::ConstTensorView weight;                 // [out, in]
  const runtime::ConstTensorView* bias = nullptr;  // [1, out] or null
};

// A linear layer on the integer GEMMs (W8A8 / W4A8 of docs/QUANT_FORMATS.md):
// y = dequant(Q(t) . W^T) + epilogue_add, with `weight` the stored integer weight [out, K] (host
// memory) and Q symmetric codes of activation_bits: per token (clipped by activation_clip_ratio)
// or with one static per-tensor scale. t = x when input_divisors and input_sources are empty;
// else t_c = x[input_sources_c] / input_divisors_c (an IEEE division, before quantizing):
// SmoothQuant's smoothing and FlattenQuant's channel split; or t = x Q, the randomized Hadamard
// rotation (`rotation`). Layers with other online transforms or QUIK outliers are not of this
// form (quant/ says which run where).
struct QuantizedLinearSource {
  std::string_view name;
  const quant::QuantizedMatrix* weight = nullptr;
  float activation_clip_ratio = 1.0f;
  std::span<const float> epilogue_add;     // [out] (bias plus output correction) or empty
  int activation_bits = 8;                 // 2..8 (qmax = 2^(bits - 1) - 1)
  uint16_t static_activation_scale = 0;    // FP16 bits; 0: per-token dynamic
  int64_t in_features = 0;                 // x's width; 0: K (weight->cols)
  std::span<const int32_t> input_sources;  // [K] x column of each GEMM input, or empty (c -> c)
  std::span<const float> input_divisors;   // [K] positive, or empty (no division)
  // An online randomized Hadamard rotation t = x Q (QuaRot; kernels/cpu/quant/hadamard.h) of
  // size K, or null; not combined with input_sources / input_divisors.
  const quant::RandomizedHadamard* rotation = nullptr;
  // FlatQuant's trained online transform t = (x diag(s)^-1) (P1 (x) P2) of size K = n1 * n2
  // (kernels/cpu/quant/kronecker_transform.h; its float32 parameters), or n1 = 0; not combined
  // with the others.
  struct KroneckerFactors {
    int64_t n1 = 0;
    int64_t n2 = 0;
    std::span<const float> scales;  // [K] the smoothing s, positive
    std::span<const float> p1;      // [n1 * n1] row-major
    std::span<const float> p2;      // [n2 * n2] row-major
  } kronecker;
  // Integer Scale's integer group multipliers (W4A8 groups; the GEMM keeps int32 until one float
  // scale per output), or null. Its weight must be `weight`'s codes and scales.
  const quant::IntegerScaledWeight* integer_scaled = nullptr;
};

// The weight format of a seeded random quantized layer (benchmarks): symmetric codes of
// `weight_bits` with FP16 scales per `group_size` inputs (0: per output channel).
struct RandomQuantizedFormat {
  int weight_bits = 4;
  int64_t group_size = 128;
};

// The op interface. Activations are runtime::TensorViews in the backend's memory(): the residual
// stream and logits are float32, every other activation is activation_type() (float32 on the CPU
// reference, bfloat16 on CUDA). Every op runs in an ExecutionContext (its stream, workspace and
// current step) and reports misuse as an error naming the op, never by aborting. Ops that need
// the step (embedding ids, positions, block tables, logit rows) read it from the context.
// A host view of float32, bfloat16 or float16 values as a float32 Tensor [rows, cols].
absl::StatusOr<Tensor> WidenToFloat(const runtime::ConstTensorView& view, std::string_view what);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual runtime::MemoryKind memory() const { return runtime::MemoryKind::kHost; }
  virtual runtime::ScalarType activation_type() const { return runtime::ScalarType::kFloat32; }

  // ---- Weights (prepared once, at load time)
  // `weight` is [out, in]; `bias` is [out] or null. Host float32; the CPU backends' own entry.
  virtual std::unique_ptr<LinearWeight> PrepareLinear(const Tensor& weight, const Tensor* bias) = 0;
  // The loader's entry. The default widens to float32 and calls PrepareLinear.
  virtual absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareNamedLinear(
      const LinearSource& source);
  // A [out, in] layer of seeded pseudo-random values (kernels/random_hash.h, uniform with this
  // standard deviation), for benchmarks of real shapes: GPUs generate it in place, with no host
  // round trip. The default fills a host float32 tensor and calls PrepareNamedLinear.
  virtual absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareRandomLinear(std::string_view name,
                                                                            int64_t out, int64_t in,
                                                                            uint64_t seed,
                                                                            float stddev);
  // A layer that runs on the integer GEMMs (see QuantizedLinearSource). The default is
  // Unimplemented naming the backend: the CPU reference runs quantized layers through
  // quant::QuantizedCpuBackend, which covers every recipe.
  virtual absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareQuantizedLinear(
      const QuantizedLinearSource& source);
  // A seeded random layer of that kind, generated in place (benchmarks of the quantized formats
  // at real shapes). Default: Unimplemented.
  virtual absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareRandomQuantizedLinear(
      std::string_view name, int64_t out, int64_t in, uint64_t seed, float stddev,
      const RandomQuantizedFormat& format);
  // Workspace bytes Linear takes from the context's arena for `rows` rows of this layer (the
  // quantized layers' INT8 activations and float32 accumulators); the model adds the largest to
  // its workspace reservation.
  virtual int64_t LinearScratchBytes(const LinearWeight& weight, int64_t rows) const { return 0; }
  // Norm scales, rotary frequencies ([1, n]) and embedding tables ([vocab, hidden]) from host
  // memory of any float type.
  virtual absl::StatusOr<std::unique_ptr<WeightTensor>> PrepareWeight(
      const runtime::ConstTensorView& host, WeightUse use) = 0;

  // ---- Memory
  virtual absl::StatusOr<std::unique_ptr<ExecutionContext>> CreateContext() = 0;
  // KV storage of `num_blocks` blocks in this backend's memory.
  virtual absl::StatusOr<std::unique_ptr<KvPool>> CreateKvPool(const KvPoolShape& shape,
                                                               int64_t num_blocks) = 0;
  // Bytes of free memory a KV pool may take (the device's free memory times the configured
  // fraction, less what the engine still needs); 0 when the backend does not size pools itself.
  virtual int64_t kv_pool_budget_bytes() const { return 0; }
  virtual KvDtype default_kv_dtype() const { return KvDtype::kFloat32; }
  // Free and total bytes of the backend's device (workers report them in Health); false for
  // host backends (the worker reports physical RAM).
  virtual bool DeviceMemory(int64_t* free_bytes, int64_t* total_bytes) const { return false; }

  // ---- Ops
  // y[m, out] = x[m, in] * weight^T (+ bias).
  virtual absl::Status Linear(ExecutionContext& context, const LinearWeight& weight,
                              const runtime::ConstTensorView& x, const runtime::TensorView& y) = 0;
  // residual += delta (when given; float32 += activation type), then
  // out = residual / sqrt(mean(residual^2) + eps) * weight per row.
  virtual absl::Status AddRmsNorm(ExecutionContext& context, const runtime::TensorView& residual,
                                  const runtime::ConstTensorView* delta, const WeightTensor& weight,
                                  float eps, const runtime::TensorView& out) = 0;
  // As AddRmsNorm (the add on every row), but out has one row per step().logit_rows entry: the
  // final norm runs only on the rows that produce logits.
  virtual absl::Status AddRmsNormLogitRows(ExecutionContext& context,
                                           const runtime::TensorView& residual,
                                           const runtime::ConstTensorView* delta,
                                           const WeightTensor& weight, float eps,
                                           const runtime::TensorView& out) = 0;
  // out[r] = table[step().token_ids[r]] (float32 residual rows); ids outside the table give a
  // zero row (a tensor-parallel rank's ids outside its vocabulary slice).
  virtual absl::Status Embedding(ExecutionContext& context, const WeightTensor& table,
                                 const runtime::TensorView& out) = 0;
  // After the qkv projection: qkv rows are q | k | v of this rank's heads. Writes q rotated
  // (Hugging Face rotate_half pairing, angle position * inv_freq) to q_out and the rotated keys
  // and the values into `pool`'s `layer` at step().slot_mapping.
  virtual absl::Status RotaryKvWrite(ExecutionContext& context, int64_t layer,
                                     const runtime::ConstTensorView& qkv,
                                     const WeightTensor& inv_freq, const AttentionShape& shape,
                                     const runtime::TensorView& q_out, KvPool& pool) = 0;
  // Causal attention of q [rows, num_heads * head_dim] over `layer` of the pool for the step's
  // sequences; out has q's shape.
  virtual absl::Status Attention(ExecutionContext& context, int64_t layer,
                                 const runtime::ConstTensorView& q, const KvPool& pool,
                                 const AttentionShape& shape, const runtime::TensorView& out) = 0;
  // out = silu(gate) * up, with gate_up [rows, 2 * n] = gate | up and out [rows, n].
  virtual absl::Status SiluMul(ExecutionContext& context, const runtime::ConstTensorView& gate_up,
                               const runtime::TensorView& out) = 0;
  // Sparse MoE (Mixtral): per row, softmax over router_logits [rows, experts] (float32), keep the
  // top `top_k`, renormalise their weights to sum 1, and write the weighted sum of those experts'
  // outputs on x to out [rows, hidden].
  virtual absl::Status SparseMoe(ExecutionContext& context, const runtime::ConstTensorView& x,
                                 const runtime::ConstTensorView& router_logits,
                                 std::span<const ExpertWeights> experts, int64_t top_k,
                                 const runtime::TensorView& out) = 0;
  // Copies a float32 view into host memory (waits for it).
  virtual absl::Status CopyToHost(ExecutionContext& context, const runtime::ConstTensorView& from,
                                  std::span<float> to) = 0;
  // Host float32 data into a float32 view of this backend (the tensor-parallel collectives run on
  // host buffers).
  virtual absl::Status CopyFromHost(ExecutionContext& context, std::span<const float> from,
                                    const runtime::TensorView& to) = 0;

  // ---- Sampling on the backend (GPUs): only the chosen ids leave the device. Backends that
  // return false here leave sampling to the host (engine::Sampler, the CPU's numerics spec).
  virtual bool samples_on_device() const { return false; }
  // `logprobs` (empty, or one per row): the chosen ids' log-softmax under the raw logits.
  // `top_logprobs` (empty, or kMaxDeviceTopLogprobs per row): row r's first
  // min(params[r].top_logprobs, vocab) entries, most likely first (lower id first on ties), the
  // rest token -1.
  virtual absl::Status SampleTokens(ExecutionContext& context,
                                    const runtime::ConstTensorView& logits,
                                    std::span<const DeviceSamplingParams> params,
                                    std::span<int32_t> tokens, std::span<float> logprobs,
                                    std::span<DeviceTopLogprob> top_logprobs = {});
};

}  // namespace flatfleet::kernels
