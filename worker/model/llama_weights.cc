#include "worker/model/llama_weights.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"

namespace flatfleet::engine {
namespace {

std::string LayerPrefix(int64_t layer) { return absl::StrCat("model.layers.", layer, "."); }

std::string ExpertPrefix(int64_t layer, int64_t expert) {
  return absl::StrCat(LayerPrefix(layer), "block_sparse_moe.experts.", expert, ".");
}

// Reads tensors (or this rank's slices of them) and prepares linear layers, counting the bytes.
class Loader {
 public:
  Loader(const WeightSource& source, kernels::Backend& backend, WeightLoadStats& stats,
         std::vector<NamedLinear>& linears)
      : source_(source), backend_(backend), stats_(stats), linears_(linears) {}

  // A tensor every rank holds whole.
  absl::StatusOr<Tensor> Replicated(const std::string& name, const std::vector<int64_t>& shape) {
    FF_ASSIGN_OR_RETURN(Tensor tensor, source_.Load(name, shape));
    stats_.replicated_bytes += tensor.size() * static_cast<int64_t>(sizeof(float));
    return tensor;
  }

  // This rank's slice of a split tensor; a slice covering the whole dimension is an ordinary
  // load, so that an unsharded model reads exactly what it always did.
  absl::StatusOr<Tensor> Sharded(const std::string& name, const std::vector<int64_t>& shape,
                                 const TensorSlice& slice) {
    Tensor tensor;
    if (slice.begin == 0 && slice.end == shape[slice.dim]) {
      FF_ASSIGN_OR_RETURN(tensor, source_.Load(name, shape));
    } else {
      FF_ASSIGN_OR_RETURN(tensor, source_.LoadSlice(name, shape, slice));
    }
    stats_.sharded_bytes += tensor.size() * static_cast<int64_t>(sizeof(float));
    return tensor;
  }

  // One column-parallel layer's share: output rows `rows` of a `prefix` layer with
  // `total_rows` outputs.
  struct RowsOf {
    std::string prefix;
    int64_t total_rows;
    IndexRange rows;
  };

  // Column-parallel layers of the same input stacked along the output dimension (e.g. q, k and
  // v into one GEMM, called `name`); biases are sliced with their rows. Weights reach the backend
  // in the checkpoint's element type: one part is a view of the mapped file, several are stacked
  // in that type (widened to float32 only when the parts' types differ).
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> StackedLinear(
      const std::string& name, const std::vector<RowsOf>& parts, int64_t in, bool with_bias) {
    LinearLayerRequest request{name,     LinearLayerRequest::Parallel::kColumn, {}, in, 0, in,
                               with_bias};
    for (const RowsOf& part : parts) {
      request.parts.push_back({part.prefix, part.total_rows, part.rows.begin, part.rows.end});
    }
    FF_ASSIGN_OR_RETURN(auto prepared, Prepared(request));
    if (prepared != nullptr) return prepared;
    std::vector<RawTensor> raws;
    int64_t out = 0;
    for (const RowsOf& part : parts) {
      FF_ASSIGN_OR_RETURN(RawTensor raw,
                          source_.LoadRawRows(part.prefix + "weight", {part.total_rows, in},
                                              part.rows.begin, part.rows.end));
      stats_.sharded_bytes += raw.elements() * static_cast<int64_t>(sizeof(float));
      out += raw.view.rows;
      raws.push_back(std::move(raw));
    }
    RawTensor stacked = raws.size() == 1 ? std::move(raws[0]) : Stack(raws, out, in);
    Tensor bias({out});
    if (with_bias) {
      int64_t row = 0;
      for (const RowsOf& part : parts) {
        const TensorSlice slice{0, part.rows.begin, part.rows.end};
        FF_ASSIGN_OR_RETURN(Tensor part_bias,
                            Sharded(part.prefix + "bias", {part.total_rows}, slice));
        std::copy(part_bias.vector().begin(), part_bias.vector().end(), bias.data() + row);
        row += part.rows.size();
      }
    }
    return PrepareOnBackend(request, stacked.view, with_bias ? &bias : nullptr);
  }

  // A row-parallel layer's share: input columns `columns` of `prefix` [out, in]. Each rank's
  // output is a partial sum, so the bias (when `with_bias`) must be added by one rank only.
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> RowParallelLinear(
      const std::string& prefix, int64_t out, int64_t in, IndexRange columns, bool with_bias) {
    LinearLayerRequest request{prefix.substr(0, prefix.size() - 1),
                               LinearLayerRequest::Parallel::kRow,
                               {{prefix, out, 0, out}},
                               in,
                               columns.begin,
                               columns.end,
                               with_bias};
    FF_ASSIGN_OR_RETURN(auto prepared, Prepared(request));
    if (prepared != nullptr) return prepared;
    RawTensor weight;
    if (columns.begin == 0 && columns.end == in) {
      FF_ASSIGN_OR_RETURN(weight, source_.LoadRawRows(prefix + "weight", {out, in}, 0, out));
      stats_.sharded_bytes += weight.elements() * static_cast<int64_t>(sizeof(float));
    } else {  // a column slice is not contiguous: float32 through the source's slicing
      FF_ASSIGN_OR_RETURN(Tensor slice,
                          Sharded(prefix + "weight", {out, in}, {1, columns.begin, columns.end}));
      weight = OwnedFloat(std::move(slice));
    }
    if (!with_bias) return PrepareOnBackend(request, weight.view, nullptr);
    FF_ASSIGN_OR_RETURN(Tensor bias, Replicated(prefix + "bias", {out}));
    return PrepareOnBackend(request, weight.view, &bias);
  }

  // A layer every rank holds whole.
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> ReplicatedLinear(const std::string& prefix,
                                                                          int64_t out, int64_t in) {
    LinearLayerRequest request{prefix.substr(0, prefix.size() - 1),
                               LinearLayerRequest::Parallel::kReplicated,
                               {{prefix, out, 0, out}},
                               in,
                               0,
                               in,
                               false};
    FF_ASSIGN_OR_RETURN(auto prepared, Prepared(request));
    if (prepared != nullptr) return prepared;
    FF_ASSIGN_OR_RETURN(RawTensor weight,
                        source_.LoadRawRows(prefix + "weight", {out, in}, 0, out));
    stats_.replicated_bytes += weight.elements() * static_cast<int64_t>(sizeof(float));
    return PrepareOnBackend(request, weight.view, nullptr);
  }

  // Hands a linear layer's weight to the backend, by name.
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> PrepareOnBackend(
      const LinearLayerRequest& request, const runtime::ConstTensorView& weight,
      const Tensor* bias) {
    std::optional<runtime::ConstTensorView> bias_view;
    if (bias != nullptr) bias_view = runtime::ConstTensorView(*bias);
    FF_ASSIGN_OR_RETURN(
        std::unique_ptr<kernels::LinearWeight> handle,
        backend_.PrepareNamedLinear({request.name, weight, bias_view ? &*bias_view : nullptr}));
    return Record(request, std::move(handle));
  }

  // A norm scale vector or embedding table on the backend.
  absl::StatusOr<std::unique_ptr<kernels::WeightTensor>> Weight(
      const runtime::ConstTensorView& view, kernels::WeightUse use) {
    return backend_.PrepareWeight(view, use);
  }

  static RawTensor OwnedFloat(Tensor values) {
    RawTensor raw;
    const int64_t cols = values.rank() == 1 ? values.dim(0) : values.dim(-1);
    const int64_t rows = cols == 0 ? 0 : values.size() / cols;
    raw.owned.resize(values.size() * sizeof(float));
    std::memcpy(raw.owned.data(), values.data(), raw.owned.size());
    raw.view = runtime::ConstTensorView(raw.owned.data(), runtime::ScalarType::kFloat32,
                                        runtime::MemoryKind::kHost, rows, cols);
    return raw;
  }

  // Parts stacked row-wise in their common element type (float32 if they differ).
  static RawTensor Stack(const std::vector<RawTensor>& parts, int64_t rows, int64_t cols) {
    bool same_type = true;
    for (const RawTensor& part : parts) same_type &= part.view.type == parts[0].view.type;
    RawTensor stacked;
    const runtime::ScalarType type = same_type ? parts[0].view.type : runtime::ScalarType::kFloat32;
    const size_t element = runtime::ScalarSize(type);
    stacked.owned.resize(static_cast<size_t>(rows * cols) * element);
    std::byte* dst = stacked.owned.data();
    for (const RawTensor& part : parts) {
      if (same_type) {
        // Rows in parallel: the first read of a mapped checkpoint's pages (fused QKV, gate/up).
        const std::byte* src = part.view.row<std::byte>(0);
        const size_t src_stride = part.view.row_stride * element, row_bytes = cols * element;
        ThreadPool::Default().ParallelFor(
            part.view.rows,
            [&](int64_t begin, int64_t end) {
              for (int64_t r = begin; r < end; ++r) {
                std::memcpy(dst + r * row_bytes, src + r * src_stride, row_bytes);
              }
            },
            std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, row_bytes)));
        dst += part.view.rows * row_bytes;
      } else {
        const Tensor widened = *kernels::WidenToFloat(part.view, "stacked weight");
        std::memcpy(dst, widened.data(), widened.size() * sizeof(float));
        dst += widened.size() * sizeof(float);
      }
    }
    stacked.view = runtime::ConstTensorView(stacked.owned.data(), type, runtime::MemoryKind::kHost,
                                            rows, cols);
    return stacked;
  }

  // Notes a prepared layer in the weights' index.
  std::unique_ptr<kernels::LinearWeight> Record(const LinearLayerRequest& request,
                                                std::unique_ptr<kernels::LinearWeight> handle) {
    linears_.push_back({request, handle.get()});
    return handle;
  }

 private:
  // The source's own prepared layer (a quantized checkpoint), or nullptr.
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> Prepared(
      const LinearLayerRequest& request) {
    FF_ASSIGN_OR_RETURN(std::unique_ptr<kernels::LinearWeight> prepared,
                        source_.LoadPreparedLinear(request, backend_));
    if (prepared == nullptr) return prepared;
    int64_t out = 0;
    for (const LinearLayerRequest::Part& part : request.parts) {
      out += part.row_end - part.row_begin;
    }
    const int64_t in = request.parallel == LinearLayerRequest::Parallel::kRow
                           ? request.column_end - request.column_begin
                           : request.in_features;
    if (prepared->in_features() != in || prepared->out_features() != out) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", request.name, "': the source prepared it as [", prepared->out_features(), ", ",
          prepared->in_features(), "], this rank needs [", out, ", ", in, "]"));
    }
    return Record(request, std::move(prepared));
  }

  const WeightSource& source_;
  kernels::Backend& backend_;
  WeightLoadStats& stats_;
  std::vector<NamedLinear>& linears_;
};

// The rows of `heads` in a projection whose outputs are heads of `head_dim` values.
IndexRange HeadRows(IndexRange heads, int64_t head_dim) {
  return {heads.begin * head_dim, heads.end * head_dim};
}

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
  return LoadLlamaWeights(config, source, backend, SingleRankLayout(config));
}

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const ModelConfig& config, const WeightSource& source,
                                              kernels::Backend& backend,
                                              const TensorParallelLayout& layout,
                                              const WeightLoadProgress& progress) {
  LlamaWeights weights;
  weights.layout = layout;
  Loader load(source, backend, weights.load_stats, weights.linears);
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  const IndexRange local_inter = layout.intermediate;
  const IndexRange q_rows = HeadRows(layout.heads, config.head_dim);
  const IndexRange kv_rows = HeadRows(layout.kv_heads, config.head_dim);
  // Row-parallel outputs are summed over ranks: rank 0 alone adds their biases.
  const bool holds_row_parallel_bias = layout.rank == 0;
  FF_ASSIGN_OR_RETURN(RawTensor embedding,
                      source.LoadRawRows("model.embed_tokens.weight", {config.vocab_size, hidden},
                                         layout.vocab.begin, layout.vocab.end));
  weights.load_stats.sharded_bytes += embedding.elements() * static_cast<int64_t>(sizeof(float));
  weights.layers.resize(config.num_hidden_layers);
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    DecoderLayerWeights& w = weights.layers[layer];
    const std::string prefix = LayerPrefix(layer);
    FF_ASSIGN_OR_RETURN(Tensor input_norm,
                        load.Replicated(prefix + "input_layernorm.weight", {hidden}));
    FF_ASSIGN_OR_RETURN(w.input_norm, load.Weight(input_norm, kernels::WeightUse::kVector));
    FF_ASSIGN_OR_RETURN(Tensor post_norm,
                        load.Replicated(prefix + "post_attention_layernorm.weight", {hidden}));
    FF_ASSIGN_OR_RETURN(w.post_attention_norm, load.Weight(post_norm, kernels::WeightUse::kVector));
    const std::string attn = prefix + "self_attn.";
    const bool bias = config.attention_bias;
    FF_ASSIGN_OR_RETURN(w.qkv_proj,
                        load.StackedLinear(attn + "qkv_proj",
                                           {{attn + "q_proj.", config.q_size(), q_rows},
                                            {attn + "k_proj.", config.kv_size(), kv_rows},
                                            {attn + "v_proj.", config.kv_size(), kv_rows}},
                                           hidden, bias));
    FF_ASSIGN_OR_RETURN(w.o_proj, load.RowParallelLinear(attn + "o_proj.", hidden, config.q_size(),
                                                         q_rows, bias && holds_row_parallel_bias));
    if (config.is_moe()) {
      // The router is replicated so that every rank routes identically; each expert is split
      // by its intermediate dimension like the dense MLP.
      FF_ASSIGN_OR_RETURN(w.router, load.ReplicatedLinear(prefix + "block_sparse_moe.gate.",
                                                          config.num_local_experts, hidden));
      w.experts.resize(config.num_local_experts);
      for (int64_t e = 0; e < config.num_local_experts; ++e) {
        const std::string expert = ExpertPrefix(layer, e);
        FF_ASSIGN_OR_RETURN(
            w.experts[e].gate,
            load.StackedLinear(expert + "w1", {{expert + "w1.", inter, local_inter}}, hidden,
                               false));
        FF_ASSIGN_OR_RETURN(w.experts[e].down, load.RowParallelLinear(expert + "w2.", hidden, inter,
                                                                      local_inter, false));
        FF_ASSIGN_OR_RETURN(
            w.experts[e].up,
            load.StackedLinear(expert + "w3", {{expert + "w3.", inter, local_inter}}, hidden,
                               false));
        w.expert_views.push_back(
            {w.experts[e].gate.get(), w.experts[e].up.get(), w.experts[e].down.get()});
      }
    } else {
      const std::string mlp = prefix + "mlp.";
      const bool mlp_bias = config.mlp_bias;
      FF_ASSIGN_OR_RETURN(w.gate_up_proj,
                          load.StackedLinear(mlp + "gate_up_proj",
                                             {{mlp + "gate_proj.", inter, local_inter},
                                              {mlp + "up_proj.", inter, local_inter}},
                                             hidden, mlp_bias));
      FF_ASSIGN_OR_RETURN(w.down_proj,
                          load.RowParallelLinear(mlp + "down_proj.", hidden, inter, local_inter,
                                                 mlp_bias && holds_row_parallel_bias));
    }
    if (progress) {
      progress(layer + 1, config.num_hidden_layers,
               weights.load_stats.sharded_bytes + weights.load_stats.replicated_bytes);
    }
  }
  FF_ASSIGN_OR_RETURN(Tensor final_norm, load.Replicated("model.norm.weight", {hidden}));
  FF_ASSIGN_OR_RETURN(weights.final_norm, load.Weight(final_norm, kernels::WeightUse::kVector));
  if (config.tie_word_embeddings) {
    FF_ASSIGN_OR_RETURN(
        weights.lm_head,
        load.PrepareOnBackend(
            {"lm_head",
             LinearLayerRequest::Parallel::kColumn,
             {{"model.embed_tokens.", config.vocab_size, layout.vocab.begin, layout.vocab.end}},
             hidden,
             0,
             hidden,
             false},
            embedding.view, nullptr));
  } else {
    if (!source.Has("lm_head.weight")) {
      return absl::NotFoundError(
          "lm_head.weight is missing and config.json does not set tie_word_embeddings");
    }
    FF_ASSIGN_OR_RETURN(
        weights.lm_head,
        load.StackedLinear("lm_head", {{"lm_head.", config.vocab_size, layout.vocab}}, hidden,
                           false));
  }
  FF_ASSIGN_OR_RETURN(weights.embed_tokens,
                      load.Weight(embedding.view, kernels::WeightUse::kEmbeddingTable));
  if (progress) {
    progress(config.num_hidden_layers, config.num_hidden_layers,
             weights.load_stats.sharded_bytes + weights.load_stats.replicated_bytes);
  }
  return weights;
}

}  // namespace flatfleet::engine
