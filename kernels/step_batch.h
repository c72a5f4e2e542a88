// What one forward pass runs, described once per step on the host: the backend copies it to the
// device in one transfer (block tables for all layers included) before the first layer.
#pragma once

#include <cstdint>
#include <vector>

namespace flatfleet::kernels {

// One sequence's share of the step. Its queries are rows [query_begin, query_begin + num_queries)
// of the step and are the last `num_queries` of its `context_length` cached positions (causal:
// query i sees positions <= context_length - num_queries + i).
struct StepSequence {
  int64_t query_begin = 0;
  int64_t num_queries = 0;
  int64_t context_length = 0;
  // Index of this sequence's first entry in StepBatch::block_tables.
  int64_t block_table_begin = 0;
  int64_t num_blocks = 0;
};

struct StepBatch {
  // Per row (token) of the step.
  std::vector<int32_t> token_ids;  // embedding rows (a tensor-parallel rank's local ids)
  std::vector<int32_t> positions;
  // Physical KV slot (block * block_size + offset) each row's key and value are written to;
  // negative: not written (padding rows of a replayed graph).
  std::vector<int32_t> slot_mapping;
  std::vector<StepSequence> sequences;
  // Concatenated block tables of the sequences (physical block ids, in position order).
  std::vector<int32_t> block_tables;
  // Rows whose logits are computed, in output order.
  std::vector<int32_t> logit_rows;

  // Decode steps replayed as CUDA graphs (ExecutionContext::supports_graphs): the step is padded
  // to `graph_bucket` rows (padding rows write no KV slot and their logits are ignored), and the
  // device layout uses these fixed bounds so that every step of a bucket has the same shapes.
  int64_t graph_bucket = 0;          // 0: not a graph step
  int64_t block_table_width = 0;     // entries per sequence; 0: the longest table
  int64_t context_length_bound = 0;  // attention's upper bound; 0: the longest context

  int64_t num_rows() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t max_query_length() const;
  int64_t max_context_length() const;
  int64_t max_blocks_per_sequence() const;
};

}  // namespace flatfleet::kernels
