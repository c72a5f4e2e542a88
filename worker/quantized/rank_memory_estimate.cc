#include "worker/quantized/rank_memory_estimate.h"

#include <algorithm>
#include <set>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/read_whole_file.h"
#include "common/safetensors_index.h"
#include "common/shape_string.h"
#include "common/status_macros.h"
#include "common/strict_json.h"
#include "kernels/cuda/kronecker_quantize_shape.h"
#include "worker/model/tensor_parallel.h"
#include "worker/model/weight_source.h"

namespace flatfleet::quant {
namespace {

namespace fs = std::filesystem;
using engine::IndexRange;
using engine::LinearLayerRequest;
using engine::TensorParallelLayout;

// kernels/cpu/gemm.h: PackedMatrix stores W in panels of 16 output rows, zero-padded.
constexpr int64_t kCpuPanelRows = 16;
// kernels/cuda/backend/cuda_quantized_linear.h: a quantized layer's K is padded to a multiple of
// 32 with zero codes (per-channel weights; grouped ones are multiples of 32 already).
constexpr int64_t kCudaKMultiple = 32;
// kernels/cuda/backend/cuda_quantized_linear.h, kIntegerScaleChunkBytes: an Integer Scale
// layer's int32 group sums are computed in chunks of rows within this many bytes.
constexpr int64_t kCudaIntegerScaleChunkBytes = int64_t{64} << 20;
// runtime/workspace_arena.h: every workspace view is aligned to this.
constexpr int64_t kWorkspaceAlignment = 256;
// worker/batching/continuous_batcher.h: ContinuousBatcherOptions::kv_block_size, and
// kv_cache_blocks, the pool of a CPU worker (`serve worker` sizes it from the device on GPUs).
constexpr int64_t kKvBlockPositions = 16;
constexpr int64_t kCpuWorkerKvBlocks = 1024;

int64_t RoundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

bool IsFloat(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

// Bytes per element the engine keeps of float weights.
struct FloatHolding {
  int64_t linear;     // a float linear's weight
  int64_t embedding;  // the embedding table
};

FloatHolding FloatHoldingOf(EngineKind engine) {
  // CUDA: PrepareNamedLinear uploads bf16; PrepareWeight(kEmbeddingTable) bf16. CPU: float32.
  return engine == EngineKind::kCuda ? FloatHolding{2, 2} : FloatHolding{4, 4};
}

// Everything one rank adds up, with the checks on the tensors it reads.
class RankCounter {
 public:
  RankCounter(const CheckpointShapes& shapes, const RankMemoryOptions& options,
              const TensorParallelLayout& layout)
      : shapes_(shapes), options_(options), layout_(layout) {
    if (shapes.manifest) {
      for (const StoredLinearLayer& layer : shapes.manifest->layers) stored_[layer.name] = &layer;
      for (const std::string& name : shapes.manifest->float_layers) float_layers_.insert(name);
    }
  }

  RankMemoryEstimate& estimate() { return estimate_; }
  int64_t quantized_scratch() const { return quantized_scratch_; }

  // A float tensor the model reads whole or by rows; `elements` of it obtained.
  absl::Status FloatTensor(const std::string& name, const std::vector<int64_t>& shape,
                           int64_t elements, bool linear = false) {
    FF_RETURN_IF_ERROR(Expect(name, shape, linear).status());
    estimate_.weight_elements += elements;
    return absl::OkStatus();
  }

  // One linear layer as LoadLlamaWeights requests it (its name, stacked parts and share).
  absl::Status Linear(const LinearLayerRequest& request, int64_t* bytes) {
    int64_t rows = 0;
    for (const LinearLayerRequest::Part& part : request.parts) {
      rows += part.row_end - part.row_begin;
    }
    const bool row_parallel = request.parallel == LinearLayerRequest::Parallel::kRow;
    const int64_t columns =
        row_parallel ? request.column_end - request.column_begin : request.in_features;
    if (shapes_.manifest) {
      auto stored = stored_.find(request.name);
      if (stored != stored_.end()) {
        return QuantizedLinear(request, *stored->second, rows, columns, bytes);
      }
      if (!float_layers_.contains(request.name)) {
        return absl::NotFoundError(
            absl::StrCat((shapes_.dir / std::string(kQuantizationJsonName)).string(), ": layer ",
                         request.name, " is neither a quantized nor a float layer"));
      }
    }
    // A float layer: read from its checkpoint tensors (the tied LM head from the embedding's).
    for (const LinearLayerRequest::Part& part : request.parts) {
      const bool tied_lm_head = request.name == "lm_head" && part.prefix == "model.embed_tokens.";
      FF_RETURN_IF_ERROR(Expect(part.prefix + "weight", {part.total_rows, request.in_features},
                                /*linear=*/true)
                             .status());
      if (!tied_lm_head) estimate_.weight_elements += (part.row_end - part.row_begin) * columns;
      if (request.with_bias) {
        FF_RETURN_IF_ERROR(Expect(part.prefix + "bias", {part.total_rows}).status());
      }
    }
    const bool bias = request.with_bias;
    if (bias) estimate_.weight_elements += rows;
    const FloatHolding holding = FloatHoldingOf(options_.engine);
    if (options_.engine == EngineKind::kCuda) {
      // cuda_backend.cc PrepareNamedLinear: bf16 weight; bias in bf16 and in float32.
      *bytes += rows * columns * holding.linear + (bias ? rows * 6 : 0);
    } else if (shapes_.manifest) {
      // QuantizedCpuBackend::PrepareNamedLinear keeps float layers as a QuantizedCpuLinearWeight:
      // its float32 weight_ (and bias_) beside the packed float32 cpu handle (float_linear_).
      *bytes +=
          rows * columns * 4 + RoundUp(rows, kCpuPanelRows) * columns * 4 + (bias ? rows * 8 : 0);
    } else {
      // CpuLinearWeight: PackedMatrix panels of 16 rows, float32 bias.
      *bytes += RoundUp(rows, kCpuPanelRows) * columns * 4 + (bias ? rows * 4 : 0);
    }
    return absl::OkStatus();
  }

 private:
  // The header of `name`, checked against the shape the model needs (nullptr for a config-only
  // model). Linear and embedding weights must be F32, F16 or BF16 (what the loader widens).
  absl::StatusOr<const TensorInfo*> Expect(const std::string& name,
                                           const std::vector<int64_t>& shape,
                                           bool linear = false) const {
    if (shapes_.tensors.empty()) return nullptr;
    auto it = shapes_.tensors.find(name);
    if (it == shapes_.tensors.end()) {
      return absl::NotFoundError(absl::StrCat(shapes_.dir.string(), ": tensor '", name,
                                              "', which the model in config.json reads, is in "
                                              "none of the tensor files"));
    }
    const TensorInfo& info = it->second;
    if (info.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(info.file, ": tensor '", name, "' is ",
                                                     FormatShape(info.shape),
                                                     ", config.json needs ", FormatShape(shape)));
    }
    if (linear ? !IsFloat(info.dtype) : !(IsFloat(info.dtype) || info.dtype == DType::kF64)) {
      return absl::InvalidArgumentError(
          absl::StrCat(info.file, ": tensor '", name, "' is ", std::string(DTypeName(info.dtype)),
                       "; the engine loads F32, F16 or BF16 weights"));
    }
    return &info;
  }

  // A stored tensor of a quantized layer, checked for its dtype and shape as the loader does.
  absl::Status ExpectStored(const std::string& name, DType dtype,
                            const std::vector<int64_t>& shape) const {
    auto it = shapes_.tensors.find(name);
    if (it == shapes_.tensors.end()) {
      return absl::NotFoundError(absl::StrCat(shapes_.dir.string(), ": tensor '", name,
                                              "' of the quantized layer is in none of the "
                                              "tensor files"));
    }
    const TensorInfo& info = it->second;
    if (info.dtype != dtype || info.shape != shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(info.file, ": tensor '", name, "' is ", std::string(DTypeName(info.dtype)),
                       " ", FormatShape(info.shape), ", expected ", std::string(DTypeName(dtype)),
                       " ", FormatShape(shape)));
    }
    return absl::OkStatus();
  }

  // A stored layer's share as the backend rebuilds it (quantized_checkpoint.cc LoadPreparedLinear:
  // the whole layer read, then stored_layer_slicing.h keeps this rank's rows or columns).
  absl::Status QuantizedLinear(const LinearLayerRequest& request, const StoredLinearLayer& layer,
                               int64_t rows, int64_t columns, int64_t* bytes) {
    const std::string quantization_json =
        (shapes_.dir / std::string(kQuantizationJsonName)).string();
    int64_t total_rows = 0;
    for (const LinearLayerRequest::Part& part : request.parts) total_rows += part.total_rows;
    if (layer.out_features != total_rows || layer.in_features != request.in_features) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: layer %s is [%d, %d], the model in config.json needs [%d, %d]", quantization_json,
          layer.name, layer.out_features, layer.in_features, total_rows, request.in_features));
    }
    const int64_t outliers = static_cast<int64_t>(layer.outlier_channels.size());
    const int64_t stored_k = layer.transformed_features - outliers;  // Kw of QUANT_FORMATS.md
    const int64_t group = layer.weight_format.group_size;            // 0: per channel
    const int bits = layer.weight_format.bits;
    const int64_t n = layer.out_features;
    const int64_t stored_groups = group == 0 ? 1 : stored_k / group;
    // The loader validates these before anything else; so does the estimate.
    FF_RETURN_IF_ERROR(ExpectStored(StoredTensorName(layer.name, "qweight"), DType::kU8,
                                    {n, (stored_k * bits + 7) / 8}));
    FF_RETURN_IF_ERROR(
        ExpectStored(StoredTensorName(layer.name, "scales"), DType::kF16, {n, stored_groups}));
    int64_t transform_array_bytes = 0;
    bool hadamard = false;
    // FlatQuant's transform needs a float32 row of scratch only on the exact path (the fused
    // kernel writes the codes itself): kronecker_quantize_shape.h's rule, at the default
    // FLATFLEET_KRONECKER_EXACT.
    bool kronecker_exact = false;
    for (size_t i = 0; i < layer.transforms.size(); ++i) {
      hadamard |= layer.transforms[i].kind == "hadamard";
      if (layer.transforms[i].kind == "flatquant") {
        const nlohmann::json& params = layer.transforms[i].params;
        const int64_t n1 = params.value("n1", int64_t{0}), n2 = params.value("n2", int64_t{0});
        kronecker_exact |= !cuda::KroneckerRunsFused(
            n1, n2, (1 << (layer.activation_format.bits - 1)) - 1,
            layer.static_activation_scale.has_value(), /*exact_only=*/false);
      }
      for (const std::string& array : layer.transforms[i].arrays) {
        const std::string name = StoredTransformArrayName(layer.name, i, array);
        auto it = shapes_.tensors.find(name);
        if (it == shapes_.tensors.end()) {
          return absl::NotFoundError(absl::StrCat(shapes_.dir.string(), ": tensor '", name,
                                                  "' of the quantized layer is in none of the "
                                                  "tensor files"));
        }
        transform_array_bytes += it->second.num_elements() * 4;  // float32 arrays
      }
    }
    // This rank's integer matrix: kw columns in `groups` groups, `kept_outliers` FP16 columns.
    int64_t kw = stored_k;
    int64_t kept_outliers = outliers;
    const bool sliced = request.parallel == LinearLayerRequest::Parallel::kRow &&
                        (request.column_begin != 0 || request.column_end != request.in_features);
    if (sliced) {
      if (!layer.transforms.empty()) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "layer %s: tensor parallelism splits its %d input columns over %d ranks, but its "
            "online input transform (%s) mixes all of them; run it unsharded",
            layer.name, layer.in_features, layout_.size, layer.transforms.front().kind));
      }
      kept_outliers = 0;
      for (int64_t c : layer.outlier_channels) {
        kept_outliers += c >= request.column_begin && c < request.column_end;
      }
      kw = columns - kept_outliers;
      // The columns' bounds in the integer matrix (QUIK's holds the non-outliers in order).
      auto rest_before = [&](int64_t column) {
        int64_t before = 0;
        for (int64_t c : layer.outlier_channels) before += c < column;
        return column - before;
      };
      const int64_t begin = rest_before(request.column_begin);
      const int64_t end = rest_before(request.column_end);
      if (group > 0 && (begin % group != 0 || end % group != 0)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "layer %s: tensor parallelism over %d ranks splits its weight columns at [%d, %d), "
            "but its scale groups of %d columns would span ranks",
            layer.name, layout_.size, begin, end, group));
      }
    }
    const int64_t groups = group == 0 ? 1 : kw / group;
    const bool integer_scales = layer.gemm == LinearGemmKind::kIntegerScales;
    const bool asymmetric = !layer.weight_format.symmetric;
    // Bias: column-parallel rows sliced; row-parallel on the rank that adds it.
    const bool bias = layer.bias && request.with_bias;
    const bool shift = layer.output_shift && (!sliced || request.column_begin == 0);
    if (options_.engine == EngineKind::kCuda) {
      // cuda_quantized_linear.cc UploadQuantizedLinear: K padded to 32 per channel; 4-bit codes
      // repacked into uint32 words of 8 nibbles, and so are 2- and 3-bit ones, widened to INT4
      // operands at load (int4_operand_widening.h); 8-bit codes int8 (5- to 7-bit weights have
      // no CUDA kernel and are refused at load: counted at a byte each).
      const bool int4_words = bits <= 4;
      const int64_t padded = group == 0 ? RoundUp(kw, kCudaKMultiple) : kw;
      *bytes += int4_words ? rows * padded / 2 : rows * padded;
      *bytes += rows * groups * 2;                                  // FP16 scales
      *bytes += asymmetric ? rows * groups : 0;                     // int8 zero points
      *bytes += integer_scales ? rows * groups * 4 + rows * 2 : 0;  // multipliers, base scales
      // AttachW4A8Fragments: the fragment layout's copy of the codes (rows padded to 16) and its
      // 8-byte scale / zero-point entries per pair of rows and group.
      if (int4_words && !integer_scales && (group == 0 ? padded : group) % 128 == 0) {
        const int64_t blocks = (rows + 15) / 16;
        *bytes += blocks * 16 * padded / 2 + blocks * groups * 64;
      }
      *bytes += rows * 4;                  // float32 epilogue: bias + output shift
      *bytes += rows * kept_outliers * 2;  // QUIK's FP16 columns (as stored)
      *bytes += transform_array_bytes + (hadamard ? layer.transformed_features * 8 : 0);
      // QuantizedLinearScratchBytes for a step of max_step_tokens rows.
      const int64_t m = options_.max_step_tokens;
      int64_t scratch = (hadamard || kronecker_exact
                             ? RoundUp(m * layer.transformed_features * 4, kWorkspaceAlignment)
                             : 0) +
                        RoundUp(m * padded, kWorkspaceAlignment) +
                        RoundUp(m * 2, kWorkspaceAlignment);
      if (integer_scales && group > 0) {
        const int64_t per_row = std::max<int64_t>(1, rows * groups * 4);
        const int64_t chunk =
            std::clamp<int64_t>(std::min(m, kCudaIntegerScaleChunkBytes / per_row), 1, 65535);
        scratch += RoundUp(chunk * per_row, kWorkspaceAlignment) +
                   RoundUp(chunk * rows * 4, kWorkspaceAlignment);
      } else {
        scratch += RoundUp(m * rows * 4, kWorkspaceAlignment);
      }
      quantized_scratch_ = std::max(quantized_scratch_, scratch);
    } else {
      // QuantizedMatrix (kernels/cpu/quant/quantized_matrix.h): one int8 per code, FP16 scales,
      // int8 zero points; IntegerScaledWeight's int32 multipliers and FP16 base scales;
      // QuikWeight's FP16 outlier columns; float32 bias, shift and transform arrays.
      *bytes += rows * kw + rows * groups * 2 + (asymmetric ? rows * groups : 0);
      *bytes += integer_scales ? rows * groups * 4 + rows * 2 : 0;
      *bytes += rows * kept_outliers * 2;
      *bytes += (bias ? rows * 4 : 0) + (shift ? rows * 4 : 0);
      *bytes += transform_array_bytes + (hadamard ? layer.transformed_features * 8 : 0);
    }
    return absl::OkStatus();
  }

  const CheckpointShapes& shapes_;
  const RankMemoryOptions& options_;
  const TensorParallelLayout& layout_;
  std::map<std::string, const StoredLinearLayer*, std::less<>> stored_;
  std::set<std::string, std::less<>> float_layers_;
  RankMemoryEstimate estimate_;
  int64_t quantized_scratch_ = 0;
};

std::string LayerPrefix(int64_t layer) { return absl::StrCat("model.layers.", layer, "."); }

LinearLayerRequest Column(std::string name, std::vector<LinearLayerRequest::Part> parts, int64_t in,
                          bool bias) {
  return {
      std::move(name), LinearLayerRequest::Parallel::kColumn, std::move(parts), in, 0, in, bias};
}

LinearLayerRequest Row(const std::string& prefix, int64_t out, int64_t in, IndexRange columns,
                       bool bias) {
  return {prefix.substr(0, prefix.size() - 1),
          LinearLayerRequest::Parallel::kRow,
          {{prefix, out, 0, out}},
          in,
          columns.begin,
          columns.end,
          bias};
}

// One rank's bytes, walking the model as LoadLlamaWeights (worker/model/llama_weights.cc) does.
absl::StatusOr<RankMemoryEstimate> EstimateOneRank(const CheckpointShapes& shapes,
                                                   const RankMemoryOptions& options,
                                                   const TensorParallelLayout& layout) {
  const ModelConfig& config = shapes.config;
  RankCounter count(shapes, options, layout);
  RankMemoryEstimate& estimate = count.estimate();
  estimate.engine = options.engine;
  estimate.tp_size = layout.size;
  estimate.rank = layout.rank;
  const FloatHolding holding = FloatHoldingOf(options.engine);
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  const IndexRange local_inter = layout.intermediate;
  const IndexRange q_rows{layout.heads.begin * config.head_dim, layout.heads.end * config.head_dim};
  const IndexRange kv_rows{layout.kv_heads.begin * config.head_dim,
                           layout.kv_heads.end * config.head_dim};
  const bool row_bias = layout.rank == 0;  // rank 0 alone adds row-parallel biases
  auto part = [](std::string prefix, int64_t total, IndexRange rows) {
    return LinearLayerRequest::Part{std::move(prefix), total, rows.begin, rows.end};
  };

  FF_RETURN_IF_ERROR(count.FloatTensor("model.embed_tokens.weight", {config.vocab_size, hidden},
                                       layout.vocab.size() * hidden, /*linear=*/true));
  estimate.embedding_bytes = layout.vocab.size() * hidden * holding.embedding;
  int64_t norm_elements = 0;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    const std::string prefix = LayerPrefix(layer);
    for (const char* norm : {"input_layernorm.weight", "post_attention_layernorm.weight"}) {
      FF_RETURN_IF_ERROR(count.FloatTensor(prefix + norm, {hidden}, hidden));
      norm_elements += hidden;
    }
    const std::string attn = prefix + "self_attn.";
    const bool bias = config.attention_bias;
    FF_RETURN_IF_ERROR(count.Linear(Column(attn + "qkv_proj",
                                           {part(attn + "q_proj.", config.q_size(), q_rows),
                                            part(attn + "k_proj.", config.kv_size(), kv_rows),
                                            part(attn + "v_proj.", config.kv_size(), kv_rows)},
                                           hidden, bias),
                                    &estimate.linear_bytes));
    FF_RETURN_IF_ERROR(
        count.Linear(Row(attn + "o_proj.", hidden, config.q_size(), q_rows, bias && row_bias),
                     &estimate.linear_bytes));
    if (config.is_moe()) {
      const std::string moe = prefix + "block_sparse_moe.";
      FF_RETURN_IF_ERROR(
          count.Linear({moe + "gate",
                        LinearLayerRequest::Parallel::kReplicated,
                        {{moe + "gate.", config.num_local_experts, 0, config.num_local_experts}},
                        hidden,
                        0,
                        hidden,
                        false},
                       &estimate.linear_bytes));
      for (int64_t e = 0; e < config.num_local_experts; ++e) {
        const std::string expert = absl::StrCat(moe, "experts.", e, ".");
        FF_RETURN_IF_ERROR(count.Linear(
            Column(expert + "w1", {part(expert + "w1.", inter, local_inter)}, hidden, false),
            &estimate.linear_bytes));
        FF_RETURN_IF_ERROR(count.Linear(Row(expert + "w2.", hidden, inter, local_inter, false),
                                        &estimate.linear_bytes));
        FF_RETURN_IF_ERROR(count.Linear(
            Column(expert + "w3", {part(expert + "w3.", inter, local_inter)}, hidden, false),
            &estimate.linear_bytes));
      }
    } else {
      const std::string mlp = prefix + "mlp.";
      const bool mlp_bias = config.mlp_bias;
      FF_RETURN_IF_ERROR(count.Linear(Column(mlp + "gate_up_proj",
                                             {part(mlp + "gate_proj.", inter, local_inter),
                                              part(mlp + "up_proj.", inter, local_inter)},
                                             hidden, mlp_bias),
                                      &estimate.linear_bytes));
      FF_RETURN_IF_ERROR(
          count.Linear(Row(mlp + "down_proj.", hidden, inter, local_inter, mlp_bias && row_bias),
                       &estimate.linear_bytes));
    }
  }
  FF_RETURN_IF_ERROR(count.FloatTensor("model.norm.weight", {hidden}, hidden));
  norm_elements += hidden;
  // Norms (WeightUse::kVector) stay float32 on both backends; so do the rotary frequencies.
  estimate.norm_bytes = norm_elements * 4 + config.head_dim / 2 * 4;
  const std::string lm_prefix = config.tie_word_embeddings ? "model.embed_tokens." : "lm_head.";
  FF_RETURN_IF_ERROR(count.Linear(
      Column("lm_head", {part(lm_prefix, config.vocab_size, layout.vocab)}, hidden, false),
      &estimate.lm_head_bytes));

  // The paged KV cache: this rank's KV heads (replicated when fewer than ranks).
  kernels::KvPoolShape kv;
  kv.num_layers = config.num_hidden_layers;
  kv.num_kv_heads = layout.kv_heads.size();
  kv.head_dim = config.head_dim;
  kv.block_size = kKvBlockPositions;
  kv.dtype =
      options.kv_dtype.value_or(options.engine == EngineKind::kCuda ? kernels::KvDtype::kBFloat16
                                                                    : kernels::KvDtype::kFloat32);
  int64_t blocks = (options.kv_cache_tokens + kv.block_size - 1) / kv.block_size;
  // A CPU worker's pool is a fixed block count (no device memory to size it from), allocated
  // up front: it holds at least that many.
  if (options.engine == EngineKind::kCpu) blocks = std::max(blocks, kCpuWorkerKvBlocks);
  estimate.kv_cache_tokens = blocks * kv.block_size;
  estimate.kv_cache_bytes = blocks * kv.bytes_per_block();

  // LlamaModel::WorkspaceBytes for ReserveWorkspace(max_step_tokens, max_running_sequences).
  const int64_t rows = options.max_step_tokens;
  const int64_t logit_rows = options.max_running_sequences;
  const int64_t act = options.engine == EngineKind::kCuda ? 2 : 4;  // activation_type()
  const int64_t q_local = layout.heads.size() * config.head_dim;
  const int64_t kv_local = layout.kv_heads.size() * config.head_dim;
  int64_t workspace = 0;
  auto take = [&](int64_t element, int64_t r, int64_t c) {
    workspace += RoundUp(r * c * element, kWorkspaceAlignment);
  };
  take(4, rows, hidden);  // residual stream
  take(act, rows, hidden);
  take(act, rows, q_local + 2 * kv_local);
  take(act, rows, q_local);
  take(act, rows, q_local);
  take(act, rows, hidden);
  if (config.is_moe()) {
    take(4, rows, config.num_local_experts);
  } else {
    take(act, rows, 2 * local_inter.size());
    take(act, rows, local_inter.size());
  }
  take(act, logit_rows, hidden);
  take(4, logit_rows, layout.vocab.size());
  if (options.engine == EngineKind::kCuda && layout.sharded()) {  // the logits' device gather
    take(4, logit_rows, layout.max_vocab_slice * (layout.size + 1));
    take(4, logit_rows, config.vocab_size);
  }
  if (config.is_moe()) {
    const int64_t pairs = rows * config.num_experts_per_tok;
    workspace += pairs * (2 * hidden + 3 * local_inter.size()) * act + 4 * pairs * 4 +
                 (config.num_local_experts + 1) * 4 + 8 * kWorkspaceAlignment;
  }
  estimate.workspace_bytes = workspace + count.quantized_scratch();
  if (options.engine == EngineKind::kCuda) {
    // CudaExecutionContext::ReserveWorkspace reserves a quarter more and 16 MiB for the
    // backend's own scratch (attention split-K partials, MoE permutation buffers).
    estimate.workspace_bytes += estimate.workspace_bytes / 4 + (int64_t{16} << 20);
  }
  estimate.overhead_bytes = options.runtime_overhead_bytes.value_or(
      options.engine == EngineKind::kCuda ? kCudaRuntimeOverheadBytes : kCpuRuntimeOverheadBytes);
  return estimate;
}

std::string FormatBytes(int64_t bytes) {
  // Megabytes below a gigabyte, so that small models do not read as 0.00 GB.
  const double value = static_cast<double>(bytes);
  return value >= 1e9 ? absl::StrFormat("%.2f GB", value / 1e9)
                      : absl::StrFormat("%.1f MB", value / 1e6);
}

}  // namespace

std::string_view EngineKindName(EngineKind kind) {
  return kind == EngineKind::kCuda ? "cuda" : "cpu";
}

std::string RankMemoryEstimate::Summary() const {
  return absl::StrCat(FormatBytes(total_bytes()), " = ", FormatBytes(weight_bytes()), " weights + ",
                      FormatBytes(kv_cache_bytes), " KV cache (", kv_cache_tokens, " tokens) + ",
                      FormatBytes(workspace_bytes), " workspace + ", FormatBytes(overhead_bytes),
                      " runtime (", std::string(EngineKindName(engine)), ", rank ", rank,
                      " of tp=", tp_size, ")");
}

absl::StatusOr<CheckpointShapes> ReadCheckpointShapes(const fs::path& dir) {
  CheckpointShapes shapes;
  shapes.dir = dir;
  FF_ASSIGN_OR_RETURN(shapes.config, LoadModelConfig(dir));
  std::error_code error;
  std::vector<std::string> files;
  const fs::path manifest_path = dir / std::string(kQuantizationJsonName);
  if (fs::exists(manifest_path, error)) {
    FF_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(manifest_path));
    absl::StatusOr<QuantizedCheckpointManifest> manifest = ParseQuantizedCheckpointManifest(text);
    if (!manifest.ok()) {
      return absl::Status(manifest.status().code(),
                          absl::StrCat(dir.string(), "/", manifest.status().message()));
    }
    shapes.manifest = *std::move(manifest);
    files = shapes.manifest->tensor_files;
  } else if (fs::exists(dir / "model.safetensors.index.json", error)) {
    FF_ASSIGN_OR_RETURN(SafetensorsIndex index,
                        ReadSafetensorsIndex(dir / "model.safetensors.index.json"));
    for (const SafetensorsIndexShard& shard : index.shards) files.push_back(shard.file);
  } else if (fs::exists(dir / "model.safetensors", error)) {
    files = {"model.safetensors"};
  } else {
    return absl::NotFoundError(absl::StrCat(
        dir.string(), ": neither model.safetensors.index.json nor model.safetensors found"));
  }
  for (const std::string& file : files) {
    FF_ASSIGN_OR_RETURN(std::vector<TensorInfo> tensors, ReadSafetensorsHeader(dir / file));
    for (TensorInfo& tensor : tensors) {
      auto [it, inserted] = shapes.tensors.try_emplace(tensor.name, tensor);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat(tensor.file, ": tensor '", tensor.name, "' is also in ", it->second.file));
      }
    }
  }
  return shapes;
}

CheckpointShapes ConfigOnlyShapes(const ModelConfig& config) {
  CheckpointShapes shapes;
  shapes.config = config;
  return shapes;
}

absl::StatusOr<RankMemoryEstimate> EstimateRankMemory(const CheckpointShapes& shapes,
                                                      const RankMemoryOptions& options) {
  if (options.tp_size < 1 || options.kv_cache_tokens < 0 || options.max_step_tokens < 1 ||
      options.max_running_sequences < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rank memory estimate: tp_size %d, kv_cache_tokens %d, max_step_tokens %d, "
                        "max_running_sequences %d",
                        options.tp_size, options.kv_cache_tokens, options.max_step_tokens,
                        options.max_running_sequences));
  }
  RankMemoryEstimate heaviest;
  for (int rank = 0; rank < options.tp_size; ++rank) {
    FF_ASSIGN_OR_RETURN(engine::TensorParallelLayout layout,
                        engine::PlanTensorParallel(shapes.config, rank, options.tp_size));
    FF_ASSIGN_OR_RETURN(RankMemoryEstimate estimate, EstimateOneRank(shapes, options, layout));
    if (rank == 0 || estimate.total_bytes() > heaviest.total_bytes()) heaviest = estimate;
  }
  return heaviest;
}

}  // namespace flatfleet::quant
