#include "worker/model/llama_model.h"

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "runtime/workspace_arena.h"
#include "worker/collectives/communicator.h"
#include "worker/collectives/stream_collectives.h"
#include "worker/model/paged_kv_cache.h"

namespace flatfleet::engine {

// Views into the execution context's workspace, taken in the same order every step (so a
// replayed CUDA graph finds the same addresses). The residual stream and logits are float32;
// the others are the backend's activation type. Sized for this rank's heads and intermediate
// rows (all of them when not tensor-parallel).
struct LlamaModel::Activations {
  runtime::TensorView x;  // residual stream
  runtime::TensorView normed, qkv, q, attended, block_out;
  runtime::TensorView gate_up, inter;  // dense MLP
  runtime::TensorView router_logits;   // MoE
  runtime::TensorView final_normed, logits;
  runtime::TensorView gather_scratch, full_logits;          // device tensor parallelism only
  const runtime::ConstTensorView* pending_delta = nullptr;  // block_out not yet added to x
  runtime::ConstTensorView block_out_view;

  // Calls take(type, rows, cols) for every buffer, in order.
  template <typename Take>
  static absl::Status ForEach(const ActivationSizes& n, runtime::ScalarType act, int64_t rows,
                              int64_t logit_rows, Take&& take, Activations* out) {
    using runtime::ScalarType;
    auto one = [&](runtime::TensorView* slot, ScalarType type, int64_t r,
                   int64_t c) -> absl::Status {
      absl::StatusOr<runtime::TensorView> view = take(type, r, c);
      if (!view.ok()) return view.status();
      if (slot != nullptr) *slot = *view;
      return absl::OkStatus();
    };
    auto at = [&](runtime::TensorView Activations::*member) {
      return out == nullptr ? nullptr : &(out->*member);
    };
    FF_RETURN_IF_ERROR(one(at(&Activations::x), ScalarType::kFloat32, rows, n.hidden));
    FF_RETURN_IF_ERROR(one(at(&Activations::normed), act, rows, n.hidden));
    FF_RETURN_IF_ERROR(one(at(&Activations::qkv), act, rows, n.q_size + 2 * n.kv_size));
    FF_RETURN_IF_ERROR(one(at(&Activations::q), act, rows, n.q_size));
    FF_RETURN_IF_ERROR(one(at(&Activations::attended), act, rows, n.q_size));
    FF_RETURN_IF_ERROR(one(at(&Activations::block_out), act, rows, n.hidden));
    if (n.experts > 0) {
      FF_RETURN_IF_ERROR(
          one(at(&Activations::router_logits), ScalarType::kFloat32, rows, n.experts));
    } else {
      FF_RETURN_IF_ERROR(one(at(&Activations::gate_up), act, rows, 2 * n.intermediate));
      FF_RETURN_IF_ERROR(one(at(&Activations::inter), act, rows, n.intermediate));
    }
    FF_RETURN_IF_ERROR(one(at(&Activations::final_normed), act, logit_rows, n.hidden));
    FF_RETURN_IF_ERROR(one(at(&Activations::logits), ScalarType::kFloat32, logit_rows, n.vocab));
    if (n.gathered_vocab > 0) {
      FF_RETURN_IF_ERROR(one(at(&Activations::gather_scratch), ScalarType::kFloat32, logit_rows,
                             n.gather_scratch_cols));
      FF_RETURN_IF_ERROR(
          one(at(&Activations::full_logits), ScalarType::kFloat32, logit_rows, n.gathered_vocab));
    }
    return absl::OkStatus();
  }
};

LlamaModel::LlamaModel(ModelConfig config, LlamaWeights weights, kernels::Backend& backend,
                       std::unique_ptr<kernels::ExecutionContext> context,
                       std::unique_ptr<kernels::WeightTensor> inv_freq, ModelOptions options)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      backend_(backend),
      context_(std::move(context)),
      inv_freq_(std::move(inv_freq)) {
  const TensorParallelContext& tp = options.tensor_parallel;
  if (weights_.layout.sharded() && backend_.memory() == runtime::MemoryKind::kDevice) {
    device_collectives_ = tp.device_collectives;
  } else if (weights_.layout.sharded() && tp.communicator != nullptr) {
    communicator_ = tp.communicator;
    layer_reducer_ = std::make_unique<collectives::CompressedAllReducer>(
        *communicator_,
        collectives::CompressedAllReduceOptions{tp.compress_all_reduce, tp.compression_block_size});
    embedding_reducer_ = std::make_unique<collectives::CompressedAllReducer>(
        *communicator_, collectives::CompressedAllReduceOptions{false, tp.compression_block_size});
  }
}

LlamaModel::ActivationSizes LlamaModel::Sizes() const {
  const TensorParallelLayout& layout = weights_.layout;
  ActivationSizes sizes{config_.hidden_size,
                        layout.heads.size() * config_.head_dim,
                        layout.kv_heads.size() * config_.head_dim,
                        layout.intermediate.size(),
                        config_.is_moe() ? config_.num_local_experts : 0,
                        layout.vocab.size()};
  if (device_tensor_parallel()) {
    sizes.gathered_vocab = config_.vocab_size;
    sizes.gather_scratch_cols = layout.max_vocab_slice * (layout.size + 1);
  }
  return sizes;
}

int64_t LlamaModel::WorkspaceBytes(int64_t step_tokens, int64_t logit_rows) const {
  int64_t bytes = 0;
  auto count = [&](runtime::ScalarType type, int64_t rows,
                   int64_t cols) -> absl::StatusOr<runtime::TensorView> {
    bytes += static_cast<int64_t>(runtime::WorkspaceArena::Footprint(type, rows, cols));
    return runtime::TensorView();
  };
  Activations::ForEach(Sizes(), backend_.activation_type(), step_tokens, logit_rows, count, nullptr)
      .IgnoreError();
  if (config_.is_moe()) {
    // A device MoE block permutes its rows by expert: routing ids and weights, offsets, the
    // permutation both ways, and x, gate|up, the activated product and the down projection of
    // every (row, expert) pair (kernels/cuda/backend: SparseMoe).
    const int64_t pairs = step_tokens * config_.num_experts_per_tok;
    const int64_t act = static_cast<int64_t>(runtime::ScalarSize(backend_.activation_type()));
    const int64_t inter = weights_.layout.intermediate.size();
    bytes += pairs * (2 * config_.hidden_size + 3 * inter) * act + 4 * pairs * 4 +
             (config_.num_local_experts + 1) * 4 + 8 * runtime::WorkspaceArena::kAlignment;
  }
  // Op-scoped scratch of the linears (a quantized layer's INT8 activations and float32 sums),
  // released after each: the largest one counts.
  int64_t linear_scratch = 0;
  for (const NamedLinear& linear : weights_.linears) {
    const bool lm_head = linear.handle == weights_.lm_head.get();
    linear_scratch =
        std::max(linear_scratch,
                 backend_.LinearScratchBytes(*linear.handle, lm_head ? logit_rows : step_tokens));
  }
  return bytes + linear_scratch;
}

absl::Status LlamaModel::ReserveWorkspace(int64_t max_step_tokens, int64_t max_logit_rows) const {
  return context_->ReserveWorkspace(WorkspaceBytes(max_step_tokens, max_logit_rows));
}

int64_t LlamaModel::kv_row_size() const {
  return weights_.layout.kv_heads.size() * config_.head_dim;
}

absl::StatusOr<std::unique_ptr<KvCache>> LlamaModel::CreateKvCache(
    int64_t max_positions_per_sequence, int64_t max_sequences) const {
  if (max_positions_per_sequence <= 0 || max_sequences <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat("KV cache: %d sequences of %d positions",
                                                      max_sequences, max_positions_per_sequence));
  }
  PagedKvCacheShape shape;
  shape.num_layers = config_.num_hidden_layers;
  shape.row_size = kv_row_size();
  shape.head_dim = config_.head_dim;
  shape.block_size = 16;
  const kernels::KvDtype dtype = backend_.default_kv_dtype();
  shape.dtype = dtype == kernels::KvDtype::kBFloat16 ? KvCacheDtype::kBFloat16
                : dtype == kernels::KvDtype::kInt8   ? KvCacheDtype::kInt8
                                                     : KvCacheDtype::kFloat32;
  shape.max_positions_per_sequence = max_positions_per_sequence;
  shape.growable = backend_.memory() != runtime::MemoryKind::kDevice;
  const int64_t blocks_per_sequence =
      (max_positions_per_sequence + shape.block_size - 1) / shape.block_size;
  FF_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvCache> cache,
                      PagedKvCache::Create(backend_, shape, blocks_per_sequence * max_sequences));
  return std::unique_ptr<KvCache>(std::move(cache));
}

std::unique_ptr<KvCache> LlamaModel::NewKvCache(int64_t max_positions_per_sequence,
                                                int64_t max_sequences) const {
  absl::StatusOr<std::unique_ptr<KvCache>> cache =
      CreateKvCache(max_positions_per_sequence, max_sequences);
  if (!cache.ok()) {
    std::fprintf(stderr, "NewKvCache: %s\n", cache.status().ToString().c_str());
    std::abort();
  }
  return *std::move(cache);
}

TensorParallelStats LlamaModel::tensor_parallel_stats() const {
  TensorParallelStats stats = gather_stats_;
  if (device_collectives_ != nullptr) stats.layer_all_reduce = device_collectives_->stats();
  if (layer_reducer_ != nullptr) stats.layer_all_reduce = layer_reducer_->stats();
  if (embedding_reducer_ != nullptr) stats.embedding_all_reduce = embedding_reducer_->stats();
  return stats;
}

absl::Status LlamaModel::CheckTensorParallelGroup() const {
  const TensorParallelLayout& layout = weights_.layout;
  if (device_collectives_ != nullptr) {
    if (device_collectives_->size() != layout.size || device_collectives_->rank() != layout.rank) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "forward: weights are sharded for rank %d of %d but the device collectives are rank %d "
          "of %d",
          layout.rank, layout.size, device_collectives_->rank(), device_collectives_->size()));
    }
    return absl::OkStatus();
  }
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

absl::StatusOr<runtime::TensorView> LlamaModel::RunForward(std::span<const SequenceChunk> chunks,
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
  if (sharded) FF_RETURN_IF_ERROR(CheckTensorParallelGroup());

  // The step: every row's id, position and KV slot, each sequence's block table.
  kernels::StepBatch step;
  step.token_ids.reserve(total_tokens);
  step.positions.reserve(total_tokens);
  step.slot_mapping.reserve(total_tokens);
  const IndexRange vocab = weights_.layout.vocab;
  const int64_t block_size = cache.block_size();
  for (const SequenceChunk& chunk : chunks) {
    const int64_t past = cache.Length(chunk.sequence);
    const int64_t count = static_cast<int64_t>(chunk.tokens.size());
    FF_RETURN_IF_ERROR(cache.Append(chunk.sequence, count));
    const std::span<const int32_t> table = cache.BlockTable(chunk.sequence);
    const int64_t start = step.num_rows();
    step.sequences.push_back({start, count, past + count,
                              static_cast<int64_t>(step.block_tables.size()),
                              static_cast<int64_t>(table.size())});
    step.block_tables.insert(step.block_tables.end(), table.begin(), table.end());
    for (int64_t i = 0; i < count; ++i) {
      const int32_t token = chunk.tokens[i];
      // A tensor-parallel rank looks up only its vocabulary slice; other ids give zero rows and
      // the all-reduce adds exactly one non-zero row per token.
      step.token_ids.push_back(
          sharded ? (vocab.Contains(token) ? static_cast<int32_t>(token - vocab.begin) : -1)
                  : token);
      const int64_t position = past + i;
      step.positions.push_back(static_cast<int32_t>(position));
      step.slot_mapping.push_back(
          static_cast<int32_t>(table[position / block_size] * block_size + position % block_size));
      if (chunk.all_logits || i == count - 1) {
        step.logit_rows.push_back(static_cast<int32_t>(start + i));
      }
    }
  }
  // Nothing to exchange (every rank sees the same empty batch).
  if (total_tokens == 0) {
    return runtime::TensorView(nullptr, runtime::ScalarType::kFloat32, backend_.memory(), 0,
                               config_.vocab_size);
  }
  kernels::ExecutionContext& context = *context_;
  // Decode steps (one new token per sequence) replay a CUDA graph of their batch bucket: pad the
  // step to the bucket with rows that write no KV slot and whose logits are dropped.
  const int64_t real_logit_rows = static_cast<int64_t>(step.logit_rows.size());
  int64_t rows = total_tokens;
  const bool decode_only = static_cast<int64_t>(step.logit_rows.size()) == total_tokens &&
                           total_tokens == static_cast<int64_t>(chunks.size());
  if (!sharded && decode_only && context.supports_graphs() && total_tokens <= kMaxGraphBatch) {
    // Graphs hold the KV pool's addresses: another cache means capturing again.
    if (cache.pool().serial() != graph_pool_serial_) {
      context.DropGraphs();
      graph_buckets_seen_.clear();
      graph_pool_serial_ = cache.pool().serial();
    }
    int64_t bucket = 1;
    while (bucket < total_tokens) bucket *= 2;
    step.graph_bucket = bucket;
    step.block_table_width = (config_.max_position_embeddings + block_size - 1) / block_size;
    step.context_length_bound = config_.max_position_embeddings;
    const int64_t pad_table = static_cast<int64_t>(step.block_tables.size());
    step.block_tables.push_back(0);  // padding rows read block 0's first slot, write nothing
    for (int64_t r = total_tokens; r < bucket; ++r) {
      step.token_ids.push_back(0);
      step.positions.push_back(0);
      step.slot_mapping.push_back(-1);
      step.sequences.push_back({r, 1, 1, pad_table, 1});
      step.logit_rows.push_back(static_cast<int32_t>(r));
    }
    rows = bucket;
  }
  FF_RETURN_IF_ERROR(context.BeginStep(step));
  Activations scratch;
  const int64_t logit_rows = static_cast<int64_t>(step.logit_rows.size());
  FF_RETURN_IF_ERROR(Activations::ForEach(
      Sizes(), backend_.activation_type(), rows, logit_rows,
      [&](runtime::ScalarType type, int64_t r, int64_t cols) {
        return context.Scratch(type, r, cols);
      },
      &scratch));

  auto layers = [&]() -> absl::Status {
    FF_RETURN_IF_ERROR(backend_.Embedding(context, *weights_.embed_tokens, scratch.x));
    // Exactly one rank contributes each row, so even this FP32 sum is exact.
    if (sharded)
      FF_RETURN_IF_ERROR(AllReducePartialSums(scratch.x, embedding_reducer_.get(), true));
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
      const DecoderLayerWeights& layer = weights_.layers[l];
      FF_RETURN_IF_ERROR(AttentionBlock(layer, l, cache, scratch));
      FF_RETURN_IF_ERROR(FeedForwardBlock(layer, scratch));
    }
    // Only the rows whose logits were asked for go through the final norm and LM head.
    FF_RETURN_IF_ERROR(backend_.AddRmsNormLogitRows(
        context, scratch.x, scratch.pending_delta, *weights_.final_norm,
        static_cast<float>(config_.rms_norm_eps), scratch.final_normed));
    FF_RETURN_IF_ERROR(
        backend_.Linear(context, *weights_.lm_head, scratch.final_normed, scratch.logits));
    if (device_tensor_parallel()) {
      return GatherLogitsOnDevice(scratch.logits, scratch.gather_scratch, scratch.full_logits);
    }
    return absl::OkStatus();
  };
  const int64_t bucket = step.graph_bucket;
  if (bucket == 0) {
    FF_RETURN_IF_ERROR(layers());
  } else if (context.HasGraph(bucket)) {
    FF_RETURN_IF_ERROR(context.LaunchGraph(bucket));
  } else if (!graph_buckets_seen_.insert(bucket).second) {
    // Second visit: every one-time set-up (algorithm choice, workspace size) happened eagerly on
    // the first, so the ops can be recorded now.
    FF_RETURN_IF_ERROR(context.BeginGraphCapture());
    const absl::Status recorded = layers();
    FF_RETURN_IF_ERROR(context.EndGraphCapture(bucket, recorded.ok()));
    FF_RETURN_IF_ERROR(recorded);
    FF_RETURN_IF_ERROR(context.LaunchGraph(bucket));
  } else {
    FF_RETURN_IF_ERROR(layers());
  }
  if (device_tensor_parallel()) {
    // A bounded wait for this step's collectives (a silent peer becomes DeadlineExceeded and the
    // communicator is aborted), before anything waits on the stream without a bound.
    FF_RETURN_IF_ERROR(device_collectives_->Synchronize());
    return scratch.full_logits.Rows(0, real_logit_rows);
  }
  return scratch.logits.Rows(0, real_logit_rows);
}

absl::StatusOr<Tensor> LlamaModel::Forward(std::span<const SequenceChunk> chunks,
                                           KvCache& cache) const {
  FF_ASSIGN_OR_RETURN(runtime::TensorView logits, RunForward(chunks, cache));
  Tensor host({logits.rows, logits.cols});
  if (logits.rows > 0) {
    FF_RETURN_IF_ERROR(backend_.CopyToHost(*context_, logits, host.span()));
  }
  if (weights_.layout.sharded() && !device_tensor_parallel()) {
    if (logits.rows == 0) return Tensor({0, config_.vocab_size});
    return GatherLogits(host);
  }
  return host;
}

absl::StatusOr<std::vector<int32_t>> LlamaModel::ForwardAndSample(
    std::span<const SequenceChunk> chunks, KvCache& cache,
    std::span<const kernels::DeviceSamplingParams> params, std::vector<float>* logprobs,
    std::span<const int64_t> host_rows, Tensor* host_logits,
    std::vector<kernels::DeviceTopLogprob>* top_logprobs) const {
  if (!backend_.samples_on_device()) {
    return absl::FailedPreconditionError(absl::StrCat("backend ", std::string(backend_.name()),
                                                      " samples on the host: use Forward"));
  }
  // Tensor-parallel ranks sample too: after the device gather every rank holds the same full
  // logits (identical bits) and samples them with the same parameters and seeds, so every rank
  // draws the same ids with no broadcast; the group's rank 0 reports them.
  if (weights_.layout.sharded() && !device_tensor_parallel()) {
    return absl::UnimplementedError("sampling on the device with host tensor parallelism");
  }
  if (params.size() != chunks.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("forward: %d sampling entries for %d chunks",
                                                      params.size(), chunks.size()));
  }
  for (const SequenceChunk& chunk : chunks) {
    if (chunk.all_logits) {
      return absl::InvalidArgumentError("forward: device sampling takes one row per chunk");
    }
  }
  FF_ASSIGN_OR_RETURN(runtime::TensorView logits, RunForward(chunks, cache));
  std::vector<int32_t> tokens(chunks.size());
  std::vector<float> chosen_logprobs(logprobs != nullptr ? chunks.size() : 0);
  std::vector<kernels::DeviceTopLogprob> top(
      top_logprobs != nullptr ? chunks.size() * kernels::kMaxDeviceTopLogprobs : 0);
  if (!chunks.empty()) {
    FF_RETURN_IF_ERROR(
        backend_.SampleTokens(*context_, logits, params, tokens, chosen_logprobs, top));
  }
  if (logprobs != nullptr) *logprobs = std::move(chosen_logprobs);
  if (top_logprobs != nullptr) *top_logprobs = std::move(top);
  if (!host_rows.empty()) {
    if (host_logits == nullptr) {
      return absl::InvalidArgumentError("forward: host_rows need host_logits");
    }
    *host_logits = Tensor({static_cast<int64_t>(host_rows.size()), config_.vocab_size});
    for (size_t i = 0; i < host_rows.size(); ++i) {
      const int64_t row = host_rows[i];
      if (row < 0 || row >= logits.rows) {
        return absl::InvalidArgumentError(
            absl::StrFormat("forward: host row %d outside the %d logits rows", row, logits.rows));
      }
      FF_RETURN_IF_ERROR(backend_.CopyToHost(
          *context_, logits.Rows(row, 1),
          std::span<float>(host_logits->row(static_cast<int64_t>(i)), config_.vocab_size)));
    }
  }
  return tokens;
}

absl::Status LlamaModel::AllReduceOnHost(const runtime::TensorView& partial_sums,
                                         collectives::CompressedAllReducer& reducer) const {
  if (partial_sums.memory == runtime::MemoryKind::kDevice || !partial_sums.dense() ||
      partial_sums.type != runtime::ScalarType::kFloat32) {
    return absl::UnimplementedError(
        "tensor parallelism runs its collectives on host float32 activations (the CPU backend)");
  }
  return reducer.AllReduceSum(absl::MakeSpan(partial_sums.as<float>(), partial_sums.size()));
}

absl::Status LlamaModel::AllReducePartialSums(const runtime::TensorView& partial_sums,
                                              collectives::CompressedAllReducer* reducer,
                                              bool exact) const {
  if (!device_tensor_parallel()) {
    if (reducer == nullptr) return CheckTensorParallelGroup();  // no communicator
    return AllReduceOnHost(partial_sums, *reducer);
  }
  if (!partial_sums.dense() || (partial_sums.type != runtime::ScalarType::kFloat32 &&
                                partial_sums.type != runtime::ScalarType::kBFloat16)) {
    return absl::InvalidArgumentError(
        "tensor parallelism all-reduces dense float32 or bfloat16 device activations");
  }
  return device_collectives_->AllReduceSum(partial_sums.data, partial_sums.size(),
                                           partial_sums.type == runtime::ScalarType::kFloat32
                                               ? collectives::DeviceElementType::kFloat32
                                               : collectives::DeviceElementType::kBFloat16,
                                           exact, context_->native_stream());
}

absl::Status LlamaModel::GatherLogitsOnDevice(const runtime::TensorView& local,
                                              const runtime::TensorView& scratch,
                                              const runtime::TensorView& full) const {
  const TensorParallelLayout& layout = weights_.layout;
  std::vector<int64_t> begins(layout.size), widths(layout.size);
  for (int r = 0; r < layout.size; ++r) {
    const IndexRange vocab = EvenSplit(config_.vocab_size, layout.size, r);
    begins[r] = vocab.begin;
    widths[r] = vocab.size();
  }
  gather_stats_.logits_all_gather_calls += 1;
  gather_stats_.logits_all_gather_bytes +=
      static_cast<int64_t>((layout.size - 1) * local.rows * layout.max_vocab_slice * sizeof(float));
  return device_collectives_->GatherColumns(local.as<float>(), local.rows, begins, widths,
                                            scratch.as<float>(), full.as<float>(), full.cols,
                                            context_->native_stream());
}

absl::Status LlamaModel::AttentionBlock(const DecoderLayerWeights& layer, int64_t layer_index,
                                        KvCache& cache, Activations& scratch) const {
  kernels::ExecutionContext& context = *context_;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  FF_RETURN_IF_ERROR(backend_.AddRmsNorm(context, scratch.x, scratch.pending_delta,
                                         *layer.input_norm, eps, scratch.normed));
  FF_RETURN_IF_ERROR(backend_.Linear(context, *layer.qkv_proj, scratch.normed, scratch.qkv));
  // This rank's heads (all of them when not tensor-parallel).
  const kernels::AttentionShape shape{weights_.layout.heads.size(), weights_.layout.kv_heads.size(),
                                      config_.head_dim,
                                      1.0f / std::sqrt(static_cast<float>(config_.head_dim))};
  FF_RETURN_IF_ERROR(backend_.RotaryKvWrite(context, layer_index, scratch.qkv, *inv_freq_, shape,
                                            scratch.q, cache.pool()));
  FF_RETURN_IF_ERROR(
      backend_.Attention(context, layer_index, scratch.q, cache.pool(), shape, scratch.attended));
  FF_RETURN_IF_ERROR(backend_.Linear(context, *layer.o_proj, scratch.attended, scratch.block_out));
  if (weights_.layout.sharded()) {  // row-parallel o_proj: partial sums
    FF_RETURN_IF_ERROR(AllReducePartialSums(scratch.block_out, layer_reducer_.get(), false));
  }
  scratch.block_out_view = scratch.block_out;
  scratch.pending_delta = &scratch.block_out_view;
  return absl::OkStatus();
}

absl::Status LlamaModel::FeedForwardBlock(const DecoderLayerWeights& layer,
                                          Activations& scratch) const {
  kernels::ExecutionContext& context = *context_;
  FF_RETURN_IF_ERROR(backend_.AddRmsNorm(context, scratch.x, scratch.pending_delta,
                                         *layer.post_attention_norm,
                                         static_cast<float>(config_.rms_norm_eps), scratch.normed));
  if (config_.is_moe()) {
    FF_RETURN_IF_ERROR(
        backend_.Linear(context, *layer.router, scratch.normed, scratch.router_logits));
    FF_RETURN_IF_ERROR(backend_.SparseMoe(context, scratch.normed, scratch.router_logits,
                                          layer.expert_views, config_.num_experts_per_tok,
                                          scratch.block_out));
  } else {
    FF_RETURN_IF_ERROR(
        backend_.Linear(context, *layer.gate_up_proj, scratch.normed, scratch.gate_up));
    FF_RETURN_IF_ERROR(backend_.SiluMul(context, scratch.gate_up, scratch.inter));
    FF_RETURN_IF_ERROR(
        backend_.Linear(context, *layer.down_proj, scratch.inter, scratch.block_out));
  }
  if (weights_.layout.sharded()) {  // row-parallel down projections: partial sums
    FF_RETURN_IF_ERROR(AllReducePartialSums(scratch.block_out, layer_reducer_.get(), false));
  }
  scratch.block_out_view = scratch.block_out;
  scratch.pending_delta = &scratch.block_out_view;
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
  const bool device = backend.memory() == runtime::MemoryKind::kDevice;
  if (tp.size > 1 && device && tp.device_collectives == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor parallel: a group of size %d on backend %s needs device collectives (NCCL)",
        tp.size, backend.name()));
  }
  if (tp.size > 1 && !device && tp.communicator == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor parallel: a group of size %d needs a communicator", tp.size));
  }
  if (tp.device_collectives != nullptr &&
      (tp.device_collectives->size() != tp.size || tp.device_collectives->rank() != tp.rank)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor parallel: context says rank %d of %d but the device collectives are rank %d of %d",
        tp.rank, tp.size, tp.device_collectives->rank(), tp.device_collectives->size()));
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
  std::vector<float> inv_freq = RopeInverseFrequencies(config);
  if (options.bf16_rotary_frequencies) {
    for (float& frequency : inv_freq) frequency = BF16ToFloat(FloatToBF16(frequency));
  }
  FF_ASSIGN_OR_RETURN(
      std::unique_ptr<kernels::WeightTensor> frequencies,
      backend.PrepareWeight(runtime::ConstTensorView(inv_freq.data(), runtime::ScalarType::kFloat32,
                                                     runtime::MemoryKind::kHost, 1,
                                                     static_cast<int64_t>(inv_freq.size())),
                            kernels::WeightUse::kVector));
  FF_ASSIGN_OR_RETURN(std::unique_ptr<kernels::ExecutionContext> context, backend.CreateContext());
  FF_ASSIGN_OR_RETURN(LlamaWeights weights,
                      LoadLlamaWeights(config, source, backend, layout, options.load_progress));
  return std::make_unique<LlamaModel>(config, std::move(weights), backend, std::move(context),
                                      std::move(frequencies), options);
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
