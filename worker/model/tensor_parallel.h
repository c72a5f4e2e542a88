// Megatron-style tensor parallelism: which rank holds which part of a Llama/Mixtral model, and
// the context (communicator, compression) a sharded model runs its collectives through.
// docs/TENSOR_PARALLEL.md describes the sharding and where the collectives sit.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/model_config.h"

namespace flatfleet::collectives {
class Communicator;
class StreamCollectives;
}  // namespace flatfleet::collectives

namespace flatfleet::engine {

// How a model joins a tensor-parallel group. size 1 (the default) is today's single-process
// model; size > 1 needs a communicator of that size whose rank is `rank`.
struct TensorParallelContext {
  int rank = 0;
  int size = 1;
  // Not owned; must outlive the model. Every rank must run the same Forward calls in lockstep.
  collectives::Communicator* communicator = nullptr;
  // On a device backend (CUDA) the collectives run on device buffers through this instead of
  // `communicator` (not owned; must outlive the model; worker/collectives/stream_collectives.h):
  // the all-reduces in the activation type and the logits gather, on the model's stream. Whether
  // a layer all-reduce is compressed is then the collectives' measured choice, not
  // compress_all_reduce.
  collectives::StreamCollectives* device_collectives = nullptr;
  // Per-block INT8 all-reduce after o_proj and down_proj (see compressed_all_reducer.h); off is
  // a plain FP32 all-reduce. Host (CPU backend) groups only.
  bool compress_all_reduce = false;
  int compression_block_size = 128;  // floats per INT8 scale
};

// [begin, end) of some index space (heads, rows, vocabulary ids).
struct IndexRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool Contains(int64_t index) const { return index >= begin && index < end; }
};

// [0, total) cut into `parts` consecutive ranges whose sizes differ by at most one (the first
// total % parts are the longer ones); returns range `index`.
IndexRange EvenSplit(int64_t total, int parts, int index);

// One rank's share of the model.
struct TensorParallelLayout {
  int rank = 0;
  int size = 1;
  IndexRange heads;             // query heads (and the o_proj input columns they feed)
  IndexRange kv_heads;          // key/value heads those query heads read; replicated when fewer
                                // key/value heads than ranks
  IndexRange intermediate;      // MLP (or every expert's) intermediate rows
  IndexRange vocab;             // embedding rows and LM-head rows
  int64_t max_vocab_slice = 0;  // the longest vocab range of any rank (all-gather slot size)

  bool sharded() const { return size > 1; }
};

// The whole model on one rank.
TensorParallelLayout SingleRankLayout(const ModelConfig& config);

// Rank `rank` of `size`. Query heads must divide evenly; key/value heads must divide or be
// divided by `size` (then each is replicated on size / num_key_value_heads ranks); intermediate
// and vocabulary sizes may split unevenly but every rank needs at least one row.
absl::StatusOr<TensorParallelLayout> PlanTensorParallel(const ModelConfig& config, int rank,
                                                        int size);

}  // namespace flatfleet::engine
