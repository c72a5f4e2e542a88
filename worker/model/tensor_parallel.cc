#include "worker/model/tensor_parallel.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace flatfleet::engine {

IndexRange EvenSplit(int64_t total, int parts, int index) {
  const int64_t base = total / parts;
  const int64_t longer = total % parts;
  const int64_t begin = index * base + std::min<int64_t>(index, longer);
  return {begin, begin + base + (index < longer ? 1 : 0)};
}

TensorParallelLayout SingleRankLayout(const ModelConfig& config) {
  TensorParallelLayout layout;
  layout.heads = {0, config.num_attention_heads};
  layout.kv_heads = {0, config.num_key_value_heads};
  layout.intermediate = {0, config.intermediate_size};
  layout.vocab = {0, config.vocab_size};
  layout.max_vocab_slice = config.vocab_size;
  return layout;
}

absl::StatusOr<TensorParallelLayout> PlanTensorParallel(const ModelConfig& config, int rank,
                                                        int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("tensor parallel: rank %d is not in a group of size %d", rank, size));
  }
  if (size == 1) return SingleRankLayout(config);
  const int64_t heads = config.num_attention_heads;
  const int64_t kv_heads = config.num_key_value_heads;
  if (heads % size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor parallel: %d attention heads do not split over %d ranks", heads, size));
  }
  TensorParallelLayout layout;
  layout.rank = rank;
  layout.size = size;
  layout.heads = EvenSplit(heads, size, rank);
  if (kv_heads % size == 0) {
    layout.kv_heads = EvenSplit(kv_heads, size, rank);
  } else if (size % kv_heads == 0) {
    // Fewer KV heads than ranks: the size / kv_heads consecutive ranks whose query heads share
    // a KV head each hold a copy of it.
    const int64_t kv_head = rank / (size / kv_heads);
    layout.kv_heads = {kv_head, kv_head + 1};
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor parallel: %d key/value heads neither split over nor replicate onto %d ranks",
        kv_heads, size));
  }
  if (config.intermediate_size < size || config.vocab_size < size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor parallel: intermediate size %d or vocabulary %d is smaller than %d ranks",
        config.intermediate_size, config.vocab_size, size));
  }
  layout.intermediate = EvenSplit(config.intermediate_size, size, rank);
  layout.vocab = EvenSplit(config.vocab_size, size, rank);
  layout.max_vocab_slice = EvenSplit(config.vocab_size, size, 0).size();
  return layout;
}

}  // namespace flatfleet::engine
