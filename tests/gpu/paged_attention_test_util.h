// Shared by the paged-attention tests (on the GPU, paged_attention_test.cc, and in the host warp
// emulator, paged_attention_emulation_test.cc): a random paged cache behind a shuffled block
// table, the CPU reference output, and the comparison with its tolerance.
//
// Inputs: random bf16 values (INT8 caches: QuantizeKvRows codes and scales of random floats, which
// the CPU reads in its INT8 KvBlock form, so both sides see identical cached values). Unused
// blocks, the slots past each context in its last block and the unused block-table entries (which
// point at a poison block) hold NaN: reading any of them turns the output into NaN.
//
// Tolerance, per element o_d with reference r_d:  |o_d - r_d| <= 2^-7 (|r_d| + a_d), where
// a_d = sum_j p_j |v_jd| / sum_j p_j is the reference attention over |v| (same weights p). This is
// twice a worst-case bound of the tensor-core kernels' rounding (bf16 keeps 8 significant bits,
// so one rounding errs by at most 2^-8 relative):
//   * the output's bf16 rounding: at most 2^-8 |o_d|;
//   * the softmax weights P (INT8: P * scale_v) are rounded to bf16 before P V, each by at most a
//     relative 2^-8, which moves o_d by at most 2^-8 sum_j p_j |v_jd| / sum_j p_j = 2^-8 a_d;
//   * float32 summation order and exp2 vs exp: ~1e-6 relative, far below the slack.
// (The SIMT kernel only has the first.) A position missing or counted twice moves o by much more
// on some element of the batch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <random>
#include <span>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/kv_quantization.h"
#include "kernels/cuda/paged_attention.h"

namespace flatfleet::cuda::testing {

struct AttentionSequenceSpec {
  int32_t num_queries;
  int32_t context;  // the queries are its last num_queries positions
};

struct AttentionCase {
  const char* name;
  int64_t num_heads, num_kv_heads, head_dim, block_size;
  bool int8;
  std::vector<AttentionSequenceSpec> sequences;
  // Host-side bounds larger than the device lengths (a graph captured for a bucket); 0: exact.
  int64_t max_context_bound = 0;
  int64_t max_query_bound = 0;
  int64_t padding_rows = 0;       // q rows after the last sequence's, owned by none
  int64_t decode_num_splits = 0;  // 0: the wrapper's choice
};

// gtest prints the case by name instead of its bytes.
inline void PrintTo(const AttentionCase& c, std::ostream* os) { *os << c.name; }

struct PagedAttentionProblem {
  static constexpr uint16_t kBf16Nan = 0x7FC0;
  static constexpr uint16_t kHalfNan = 0x7E00;

  PagedAttentionProblem(const AttentionCase& c, std::mt19937_64& rng) : spec(c) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto nonzero_normal = [&](float stddev) {
      float v;
      do {
        v = stddev * normal(rng);
      } while (v == 0.0f);
      return v;
    };
    const int64_t heads = c.num_heads, kv_heads = c.num_kv_heads, dim = c.head_dim;
    const int64_t block_size = c.block_size;
    num_sequences = static_cast<int64_t>(c.sequences.size());
    const int64_t kv_row = kv_heads * dim;  // elements per cached position

    // Rows, lengths and bounds.
    query_starts = {0};
    int64_t max_query = 0, max_context = 0;
    for (const AttentionSequenceSpec& s : c.sequences) {
      query_starts.push_back(query_starts.back() + s.num_queries);
      context_lengths.push_back(s.context);
      max_query = std::max<int64_t>(max_query, s.num_queries);
      max_context = std::max<int64_t>(max_context, s.context);
    }
    rows = query_starts.back() + c.padding_rows;
    max_query_length = std::max(max_query, c.max_query_bound);
    max_context_length = std::max(max_context, c.max_context_bound);
    max_blocks = (max_context_length + block_size - 1) / block_size;

    // Shuffled physical blocks; one extra poison block that every unused table entry points at.
    std::vector<int64_t> blocks_of(num_sequences);
    int64_t used_blocks = 0;
    for (int64_t s = 0; s < num_sequences; ++s) {
      blocks_of[s] = (c.sequences[s].context + block_size - 1) / block_size;
      used_blocks += blocks_of[s];
    }
    num_blocks = used_blocks + 2;  // + poison + one never referenced
    std::vector<int32_t> physical(num_blocks);
    std::iota(physical.begin(), physical.end(), 0);
    std::shuffle(physical.begin(), physical.end(), rng);
    const int32_t poison_block = physical[used_blocks];
    block_tables.assign(num_sequences * max_blocks, poison_block);
    for (int64_t s = 0, next = 0; s < num_sequences; ++s) {
      for (int64_t b = 0; b < blocks_of[s]; ++b)
        block_tables[s * max_blocks + b] = physical[next++];
    }
    auto slot_of = [&](int64_t s, int64_t pos) {
      return static_cast<int64_t>(block_tables[s * max_blocks + pos / block_size]) * block_size +
             pos % block_size;
    };

    // Cached keys/values: the CPU reads each sequence's positions contiguously, the kernels
    // through the pool. Everything in the pool that no position owns is NaN.
    const int64_t pool_elements = num_blocks * block_size * kv_row;
    const int64_t pool_scales = num_blocks * block_size * kv_heads;
    if (c.int8) {
      key_code_pool.assign(pool_elements, 0);
      value_code_pool.assign(pool_elements, 0);
      key_scale_pool.assign(pool_scales, kHalfNan);
      value_scale_pool.assign(pool_scales, kHalfNan);
    } else {
      key_pool.assign(pool_elements, kBf16Nan);
      value_pool.assign(pool_elements, kBf16Nan);
    }
    cpu_keys.resize(num_sequences);
    cpu_values.resize(num_sequences);
    cpu_key_codes.resize(num_sequences);
    cpu_value_codes.resize(num_sequences);
    cpu_key_scales.resize(num_sequences);
    cpu_value_scales.resize(num_sequences);
    std::vector<kernels::KvBlock> kv_blocks(num_sequences);
    for (int64_t s = 0; s < num_sequences; ++s) {
      const int64_t context = c.sequences[s].context;
      std::vector<float> k(context * kv_row), v(context * kv_row);
      for (auto& x : k) x = BF16ToFloat(FloatToBF16(nonzero_normal(1.0f)));
      for (auto& x : v) x = BF16ToFloat(FloatToBF16(nonzero_normal(1.0f)));
      kernels::KvBlock& block = kv_blocks[s];
      block.num_positions = context;
      if (!c.int8) {
        for (int64_t pos = 0; pos < context; ++pos) {
          for (int64_t i = 0; i < kv_row; ++i) {
            key_pool[slot_of(s, pos) * kv_row + i] = FloatToBF16(k[pos * kv_row + i]);
            value_pool[slot_of(s, pos) * kv_row + i] = FloatToBF16(v[pos * kv_row + i]);
          }
        }
        cpu_keys[s] = std::move(k);
        cpu_values[s] = std::move(v);
        block.keys = cpu_keys[s].data();
        block.values = cpu_values[s].data();
      } else {
        auto& kc = cpu_key_codes[s] = std::vector<int8_t>(context * kv_row);
        auto& vc = cpu_value_codes[s] = std::vector<int8_t>(context * kv_row);
        auto& ks = cpu_key_scales[s] = std::vector<uint16_t>(context * kv_heads);
        auto& vs = cpu_value_scales[s] = std::vector<uint16_t>(context * kv_heads);
        kernels::cpu::QuantizeKvRows(k.data(), context, kv_heads, dim, kc.data(), ks.data());
        kernels::cpu::QuantizeKvRows(v.data(), context, kv_heads, dim, vc.data(), vs.data());
        for (int64_t pos = 0; pos < context; ++pos) {
          const int64_t slot = slot_of(s, pos);
          std::copy_n(kc.begin() + pos * kv_row, kv_row, key_code_pool.begin() + slot * kv_row);
          std::copy_n(vc.begin() + pos * kv_row, kv_row, value_code_pool.begin() + slot * kv_row);
          std::copy_n(ks.begin() + pos * kv_heads, kv_heads,
                      key_scale_pool.begin() + slot * kv_heads);
          std::copy_n(vs.begin() + pos * kv_heads, kv_heads,
                      value_scale_pool.begin() + slot * kv_heads);
        }
        block.key_codes = kc.data();
        block.value_codes = vc.data();
        block.key_scales = ks.data();
        block.value_scales = vs.data();
      }
    }

    // Queries (stddev 2: softmax weights range from flat to peaked).
    q_elements = rows * heads * dim;
    q_bits.resize(q_elements);
    std::vector<float> q(q_elements);
    for (int64_t i = 0; i < q_elements; ++i) {
      q_bits[i] = FloatToBF16(nonzero_normal(2.0f));
      q[i] = BF16ToFloat(q_bits[i]);
    }
    scale = 1.0f / std::sqrt(static_cast<float>(dim));

    // CPU reference.
    std::vector<kernels::AttentionSequence> cpu_sequences(num_sequences);
    for (int64_t s = 0; s < num_sequences; ++s) {
      cpu_sequences[s] = {.query_begin = query_starts[s],
                          .num_queries = c.sequences[s].num_queries,
                          .context_length = c.sequences[s].context,
                          .blocks = std::span<const kernels::KvBlock>(&kv_blocks[s], 1)};
    }
    const kernels::AttentionShape shape{
        .num_heads = heads, .num_kv_heads = kv_heads, .head_dim = dim, .scale = scale};
    expected.assign(q_elements, 0.0f);
    kernels::cpu::CausalAttention(q.data(), cpu_sequences, shape, expected.data());
    // The same weights over |v|: the scale of the P-rounding error (see the tolerance above).
    std::vector<kernels::KvBlock> abs_blocks = kv_blocks;
    for (int64_t s = 0; s < num_sequences; ++s) {
      if (!c.int8) {
        for (float& x : cpu_values[s]) x = std::fabs(x);
      } else {
        for (int8_t& code : cpu_value_codes[s]) code = static_cast<int8_t>(std::abs(code));
      }
      cpu_sequences[s].blocks = std::span<const kernels::KvBlock>(&abs_blocks[s], 1);
    }
    expected_abs.assign(q_elements, 0.0f);
    kernels::cpu::CausalAttention(q.data(), cpu_sequences, shape, expected_abs.data());
  }

  // Params over wherever the data lives (device copies, or these vectors for the emulator).
  PagedAttentionParams Params(const void* q, void* out, void* keys, void* values,
                              uint16_t* key_scales, uint16_t* value_scales, const int32_t* tables,
                              const int32_t* starts, const int32_t* lengths) const {
    PagedAttentionParams params;
    params.q = static_cast<const __nv_bfloat16*>(q);
    params.out = static_cast<__nv_bfloat16*>(out);
    params.cache = {.keys = keys,
                    .values = values,
                    .key_scales = spec.int8 ? key_scales : nullptr,
                    .value_scales = spec.int8 ? value_scales : nullptr,
                    .int8 = spec.int8,
                    .num_blocks = num_blocks,
                    .block_size = spec.block_size,
                    .num_kv_heads = spec.num_kv_heads,
                    .head_dim = spec.head_dim};
    params.block_tables = tables;
    params.max_blocks_per_sequence = max_blocks;
    params.query_starts = starts;
    params.context_lengths = lengths;
    params.num_sequences = num_sequences;
    params.num_q_rows = rows;
    params.num_heads = spec.num_heads;
    params.num_kv_heads = spec.num_kv_heads;
    params.head_dim = spec.head_dim;
    params.max_query_length = max_query_length;
    params.max_context_length = max_context_length;
    params.scale = scale;
    params.decode_num_splits = spec.decode_num_splits;
    return params;
  }

  // Compares bf16 outputs (poisoned with 0xFFFF before the run) with the reference.
  void ExpectMatches(const std::vector<uint16_t>& actual) const {
    const int64_t heads = spec.num_heads, dim = spec.head_dim;
    int64_t failures = 0;
    double worst = 0.0;  // largest |diff| / tolerance
    for (int64_t s = 0; s < num_sequences; ++s) {
      for (int64_t row = query_starts[s]; row < query_starts[s + 1]; ++row) {
        for (int64_t h = 0; h < heads; ++h) {
          const float* ref = expected.data() + (row * heads + h) * dim;
          const float* ref_abs = expected_abs.data() + (row * heads + h) * dim;
          for (int64_t d = 0; d < dim; ++d) {
            const float got = BF16ToFloat(actual[(row * heads + h) * dim + d]);
            const double tolerance = std::ldexp(std::fabs(ref[d]) + ref_abs[d], -7);
            const double diff = std::fabs(static_cast<double>(got) - ref[d]);
            if (diff > 0.0) worst = std::max(worst, diff / tolerance);  // NaN: not <= below
            if (!(diff <= tolerance) && failures++ < 8) {
              ADD_FAILURE() << "sequence " << s << " (queries " << spec.sequences[s].num_queries
                            << ", context " << spec.sequences[s].context << ") row " << row
                            << " head " << h << " d " << d << ": got " << got << ", want " << ref[d]
                            << " (tolerance " << tolerance << ")";
            }
          }
        }
      }
    }
    EXPECT_EQ(failures, 0) << "worst |diff| / tolerance = " << worst;
    int64_t padding_written = 0;
    for (int64_t i = query_starts.back() * heads * dim; i < q_elements; ++i) {
      padding_written += actual[i] != 0xFFFF;
    }
    EXPECT_EQ(padding_written, 0) << "rows owned by no sequence were written";
  }

  AttentionCase spec;
  int64_t num_sequences = 0, rows = 0, q_elements = 0, num_blocks = 0, max_blocks = 0;
  int64_t max_query_length = 0, max_context_length = 0;
  float scale = 0.0f;
  std::vector<int32_t> query_starts, context_lengths, block_tables;
  std::vector<uint16_t> q_bits;
  std::vector<uint16_t> key_pool, value_pool;          // bf16 caches
  std::vector<int8_t> key_code_pool, value_code_pool;  // INT8 caches
  std::vector<uint16_t> key_scale_pool, value_scale_pool;
  std::vector<float> expected;      // CausalAttention
  std::vector<float> expected_abs;  // CausalAttention over |v|

 private:
  // The CPU side's contiguous copies (their KvBlocks point here while the reference runs).
  std::vector<std::vector<float>> cpu_keys, cpu_values;
  std::vector<std::vector<int8_t>> cpu_key_codes, cpu_value_codes;
  std::vector<std::vector<uint16_t>> cpu_key_scales, cpu_value_scales;
};

}  // namespace flatfleet::cuda::testing
