#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "kernels/cpu/dot.h"

namespace flatfleet::kernels::cpu {
namespace {

// Key j of a block for one head, as q . k (float32 cache, or scale * sum q * code for INT8).
float KeyDot(const float* q, const KvBlock& block, int64_t j, int64_t kv_head, int64_t num_kv_heads,
             int64_t head_dim) {
  const int64_t offset = (j * num_kv_heads + kv_head) * head_dim;
  if (block.keys != nullptr) return Dot(q, block.keys + offset, head_dim);
  const int8_t* codes = block.key_codes + offset;
  float sum = 0.0f;
  for (int64_t d = 0; d < head_dim; ++d) sum = std::fma(q[d], static_cast<float>(codes[d]), sum);
  return sum * HalfToFloat(block.key_scales[j * num_kv_heads + kv_head]);
}

// out += p * v_j for one head.
void AccumulateValue(float p, const KvBlock& block, int64_t j, int64_t kv_head,
                     int64_t num_kv_heads, int64_t head_dim, float* out) {
  const int64_t offset = (j * num_kv_heads + kv_head) * head_dim;
  if (block.values != nullptr) {
    const float* v = block.values + offset;
    for (int64_t d = 0; d < head_dim; ++d) out[d] = std::fma(p, v[d], out[d]);
    return;
  }
  const int8_t* codes = block.value_codes + offset;
  const float weight = p * HalfToFloat(block.value_scales[j * num_kv_heads + kv_head]);
  for (int64_t d = 0; d < head_dim; ++d) {
    out[d] = std::fma(weight, static_cast<float>(codes[d]), out[d]);
  }
}

// One query row of one head: softmax(q . k_j * scale) over positions j < visible, times v.
void AttendOne(const float* q, const AttentionSequence& seq, int64_t kv_head,
               const AttentionShape& shape, int64_t visible, std::vector<float>& scores,
               float* out) {
  const int64_t head_dim = shape.head_dim;
  scores.resize(visible);
  float max_score = -std::numeric_limits<float>::infinity();
  int64_t pos = 0;
  for (const KvBlock& block : seq.blocks) {
    const int64_t count = std::min(block.num_positions, visible - pos);
    for (int64_t j = 0; j < count; ++j) {
      const float s = KeyDot(q, block, j, kv_head, shape.num_kv_heads, head_dim) * shape.scale;
      scores[pos + j] = s;
      max_score = std::max(max_score, s);
    }
    pos += count;
    if (pos == visible) break;
  }
  float total = 0.0f;
  for (int64_t j = 0; j < visible; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    total += scores[j];
  }
  std::fill(out, out + head_dim, 0.0f);
  pos = 0;
  for (const KvBlock& block : seq.blocks) {
    const int64_t count = std::min(block.num_positions, visible - pos);
    for (int64_t j = 0; j < count; ++j) {
      AccumulateValue(scores[pos + j], block, j, kv_head, shape.num_kv_heads, head_dim, out);
    }
    pos += count;
    if (pos == visible) break;
  }
  const float inv_total = 1.0f / total;
  for (int64_t d = 0; d < head_dim; ++d) out[d] *= inv_total;
}

}  // namespace

void CausalAttention(const float* q, std::span<const AttentionSequence> sequences,
                     const AttentionShape& shape, float* out) {
  // Work items are (query row, head) pairs, enumerated sequence by sequence.
  std::vector<int64_t> seq_of_row;
  for (size_t s = 0; s < sequences.size(); ++s) {
    seq_of_row.insert(seq_of_row.end(), sequences[s].num_queries, static_cast<int64_t>(s));
  }
  const int64_t rows = static_cast<int64_t>(seq_of_row.size());
  const int64_t heads = shape.num_heads;
  const int64_t group = heads / shape.num_kv_heads;
  const int64_t width = heads * shape.head_dim;
  std::vector<int64_t> row_in_seq(rows);
  for (int64_t r = 0, s = -1, i = 0; r < rows; ++r, ++i) {
    if (seq_of_row[r] != s) {
      s = seq_of_row[r];
      i = 0;
    }
    row_in_seq[r] = i;
  }
  ThreadPool::Default().ParallelFor(
      rows * heads,
      [&](int64_t begin, int64_t end) {
        std::vector<float> scores;
        for (int64_t item = begin; item < end; ++item) {
          const int64_t r = item / heads;
          const int64_t h = item % heads;
          const AttentionSequence& seq = sequences[seq_of_row[r]];
          const int64_t row = seq.query_begin + row_in_seq[r];
          const int64_t visible = seq.context_length - seq.num_queries + row_in_seq[r] + 1;
          AttendOne(q + row * width + h * shape.head_dim, seq, h / group, shape, visible, scores,
                    out + row * width + h * shape.head_dim);
        }
      },
      /*min_chunk=*/4);
}

}  // namespace flatfleet::kernels::cpu
