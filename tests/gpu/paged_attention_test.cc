// Paged attention (tensor-core kernels and the SIMT reference kernel) against the CPU reference
// CausalAttention (kernels/cpu/attention.h), on a paged cache gathered through a shuffled block
// table from random bf16 values (INT8: QuantizeKvRows codes and scales, which the CPU reads in its
// INT8 KvBlock form, so both sides see identical cached values).
//
// Tolerance, per (row, head) vector o with reference r:  |o_d - r_d| <= 2^-8 |r_d| + 4e-3 max|r|.
//   * 2^-8 |r_d|: the output's bf16 rounding (relative 2^-9) plus as much again for float32
//     summation-order differences (the reference accumulates sequentially, the kernels in tiles).
//   * 4e-3 max|r|: the tensor-core kernels round the softmax weights P (INT8: P * scale_v) to bf16
//     before P V, a relative error of at most 2^-9 per weight that is independent between
//     positions; its effect on o is about 2^-9 / sqrt(3) * sqrt(sum_j p_j^2 v_j^2) / sum_j p_j,
//     which for these Gaussian inputs is ~10x below 4e-3 max|r| (max|r| itself shrinks like that
//     sum as contexts grow, so the bound stays relative). A position missing or counted twice moves
//     o by much more.
// Unused blocks, the slots past each context in its last block and the unused block-table entries
// (which point at a poison block) hold NaN: reading any of them turns the output into NaN. q rows
// owned by no sequence must keep the output's poison.
#include "kernels/cuda/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "common/dtype.h"
#include "kernels/backend.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/kv_quantization.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

struct Sequence {
  int32_t num_queries;
  int32_t context;  // the queries are its last num_queries positions
};

struct AttentionCase {
  const char* name;
  int64_t num_heads, num_kv_heads, head_dim, block_size;
  bool int8;
  std::vector<Sequence> sequences;
  // Host-side bounds larger than the device lengths (a graph captured for a bucket); 0: exact.
  int64_t max_context_bound = 0;
  int64_t max_query_bound = 0;
  int64_t padding_rows = 0;       // q rows after the last sequence's, owned by none
  int64_t decode_num_splits = 0;  // 0: the wrapper's choice
};

// gtest prints the case by name instead of its bytes.
void PrintTo(const AttentionCase& c, std::ostream* os) { *os << c.name; }

constexpr uint16_t kBf16Nan = 0x7FC0;
constexpr uint16_t kHalfNan = 0x7E00;

class PagedAttentionGpuTest
    : public ::testing::TestWithParam<std::tuple<AttentionCase, bool /*reference kernel*/>> {};

TEST_P(PagedAttentionGpuTest, MatchesCpuCausalAttention) {
  FF_SKIP_WITHOUT_GPU();
  const auto& [c, reference_kernel] = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto nonzero_normal = [&](float stddev) {
    float v;
    do {
      v = stddev * normal(rng);
    } while (v == 0.0f);
    return v;
  };

  const int64_t heads = c.num_heads, kv_heads = c.num_kv_heads, dim = c.head_dim;
  const int64_t block_size = c.block_size, num_seqs = static_cast<int64_t>(c.sequences.size());
  const int64_t kv_row = kv_heads * dim;  // elements per cached position

  // Rows, lengths and bounds.
  std::vector<int32_t> query_starts{0}, context_lengths;
  int64_t max_query = 0, max_context = 0;
  for (const Sequence& s : c.sequences) {
    query_starts.push_back(query_starts.back() + s.num_queries);
    context_lengths.push_back(s.context);
    max_query = std::max<int64_t>(max_query, s.num_queries);
    max_context = std::max<int64_t>(max_context, s.context);
  }
  const int64_t rows = query_starts.back() + c.padding_rows;
  const int64_t max_query_length = std::max(max_query, c.max_query_bound);
  const int64_t max_context_length = std::max(max_context, c.max_context_bound);
  const int64_t max_blocks = (max_context_length + block_size - 1) / block_size;

  // Shuffled physical blocks; one extra poison block that every unused table entry points at.
  std::vector<int64_t> blocks_of(num_seqs);
  int64_t used_blocks = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    blocks_of[s] = (c.sequences[s].context + block_size - 1) / block_size;
    used_blocks += blocks_of[s];
  }
  const int64_t num_blocks = used_blocks + 2;  // + poison + one never referenced
  std::vector<int32_t> physical(num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  const int32_t poison_block = physical[used_blocks];
  std::vector<int32_t> block_tables(num_seqs * max_blocks, poison_block);
  for (int64_t s = 0, next = 0; s < num_seqs; ++s) {
    for (int64_t b = 0; b < blocks_of[s]; ++b) block_tables[s * max_blocks + b] = physical[next++];
  }
  auto slot_of = [&](int64_t s, int64_t pos) {
    return static_cast<int64_t>(block_tables[s * max_blocks + pos / block_size]) * block_size +
           pos % block_size;
  };

  // Cached keys/values: the CPU reads each sequence's positions contiguously, the GPU through the
  // pool. Everything in the pool that no position owns is NaN.
  const int64_t pool_elements = num_blocks * block_size * kv_row;
  std::vector<uint16_t> key_pool(pool_elements, kBf16Nan), value_pool(pool_elements, kBf16Nan);
  std::vector<int8_t> key_code_pool(pool_elements, 0), value_code_pool(pool_elements, 0);
  std::vector<uint16_t> key_scale_pool(num_blocks * block_size * kv_heads, kHalfNan),
      value_scale_pool(num_blocks * block_size * kv_heads, kHalfNan);
  std::vector<std::vector<float>> cpu_keys(num_seqs), cpu_values(num_seqs);
  std::vector<std::vector<int8_t>> cpu_key_codes(num_seqs), cpu_value_codes(num_seqs);
  std::vector<std::vector<uint16_t>> cpu_key_scales(num_seqs), cpu_value_scales(num_seqs);
  std::vector<kernels::KvBlock> kv_blocks(num_seqs);
  for (int64_t s = 0; s < num_seqs; ++s) {
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
  const int64_t q_elements = rows * heads * dim;
  std::vector<uint16_t> q_bits(q_elements);
  std::vector<float> q(q_elements);
  for (int64_t i = 0; i < q_elements; ++i) {
    q_bits[i] = FloatToBF16(nonzero_normal(2.0f));
    q[i] = BF16ToFloat(q_bits[i]);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));

  // CPU reference.
  std::vector<kernels::AttentionSequence> cpu_sequences(num_seqs);
  for (int64_t s = 0; s < num_seqs; ++s) {
    cpu_sequences[s] = {.query_begin = query_starts[s],
                        .num_queries = c.sequences[s].num_queries,
                        .context_length = c.sequences[s].context,
                        .blocks = std::span<const kernels::KvBlock>(&kv_blocks[s], 1)};
  }
  std::vector<float> expected(q_elements, 0.0f);
  kernels::cpu::CausalAttention(
      q.data(), cpu_sequences,
      {.num_heads = heads, .num_kv_heads = kv_heads, .head_dim = dim, .scale = scale},
      expected.data());

  // GPU.
  DeviceBuffer<uint16_t> d_q(q_bits), d_out(q_elements);
  DeviceBuffer<int32_t> d_tables(block_tables), d_starts(query_starts), d_lengths(context_lengths);
  DeviceBuffer<uint16_t> d_keys(c.int8 ? std::vector<uint16_t>(1) : key_pool),
      d_values(c.int8 ? std::vector<uint16_t>(1) : value_pool);
  DeviceBuffer<int8_t> d_key_codes(c.int8 ? key_code_pool : std::vector<int8_t>(1)),
      d_value_codes(c.int8 ? value_code_pool : std::vector<int8_t>(1));
  DeviceBuffer<uint16_t> d_key_scales(key_scale_pool), d_value_scales(value_scale_pool);
  ASSERT_NE(d_out.get(), nullptr);
  FF_CUDA_ASSERT(cudaMemset(d_out.get(), 0xFF, q_elements * 2));

  PagedAttentionParams params;
  params.q = reinterpret_cast<const __nv_bfloat16*>(d_q.get());
  params.out = reinterpret_cast<__nv_bfloat16*>(d_out.get());
  params.cache = {
      .keys = c.int8 ? static_cast<void*>(d_key_codes.get()) : static_cast<void*>(d_keys.get()),
      .values =
          c.int8 ? static_cast<void*>(d_value_codes.get()) : static_cast<void*>(d_values.get()),
      .key_scales = c.int8 ? d_key_scales.get() : nullptr,
      .value_scales = c.int8 ? d_value_scales.get() : nullptr,
      .int8 = c.int8,
      .num_blocks = num_blocks,
      .block_size = block_size,
      .num_kv_heads = kv_heads,
      .head_dim = dim};
  params.block_tables = d_tables.get();
  params.max_blocks_per_sequence = max_blocks;
  params.query_starts = d_starts.get();
  params.context_lengths = d_lengths.get();
  params.num_sequences = num_seqs;
  params.num_q_rows = rows;
  params.num_heads = heads;
  params.num_kv_heads = kv_heads;
  params.head_dim = dim;
  params.max_query_length = max_query_length;
  params.max_context_length = max_context_length;
  params.scale = scale;
  params.force_reference_kernel = reference_kernel;
  params.decode_num_splits = c.decode_num_splits;
  const size_t workspace_bytes = PagedAttentionWorkspaceBytes(params);
  DeviceBuffer<uint8_t> d_workspace(std::max<size_t>(workspace_bytes, 16));
  FF_CUDA_ASSERT(cudaMemset(d_workspace.get(), 0xFF, std::max<size_t>(workspace_bytes, 16)));
  params.workspace = d_workspace.get();
  params.workspace_bytes = workspace_bytes;
  const absl::Status status = PagedAttention(params, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<uint16_t> actual = d_out.ToHost();

  int64_t failures = 0;
  double worst = 0.0;  // largest |diff| / tolerance
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int64_t row = query_starts[s]; row < query_starts[s + 1]; ++row) {
      for (int64_t h = 0; h < heads; ++h) {
        const float* ref = expected.data() + (row * heads + h) * dim;
        float ref_max = 0.0f;
        for (int64_t d = 0; d < dim; ++d) ref_max = std::max(ref_max, std::fabs(ref[d]));
        for (int64_t d = 0; d < dim; ++d) {
          const float got = BF16ToFloat(actual[(row * heads + h) * dim + d]);
          const double tolerance = std::ldexp(std::fabs(ref[d]), -8) + 4e-3 * ref_max;
          const double diff = std::fabs(static_cast<double>(got) - ref[d]);
          const double ratio = std::isnan(diff) ? INFINITY : diff / tolerance;
          worst = std::max(worst, ratio);
          if (!(ratio <= 1.0) && failures++ < 8) {
            ADD_FAILURE() << "sequence " << s << " (queries " << c.sequences[s].num_queries
                          << ", context " << c.sequences[s].context << ") row " << row << " head "
                          << h << " d " << d << ": got " << got << ", want " << ref[d]
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

std::vector<AttentionCase> Cases() {
  // Llama-3-8B attention: 32 q heads, 8 KV heads, head_dim 128 (group 4: up to 4 queries per
  // sequence go to the decode kernel).
  std::vector<AttentionCase> cases = {
      {"Decode_Llama8B_Bf16_Block16",
       32,
       8,
       128,
       16,
       false,
       {{1, 1}, {1, 17}, {1, 1000}, {1, 4097}}},
      {"Decode_Llama8B_Int8_Block32",
       32,
       8,
       128,
       32,
       true,
       {{1, 1}, {1, 17}, {1, 1000}, {1, 4097}}},
      // Chunked prefill continuing a cached prefix, fresh prefill, multi-query decode-sized
      // sequences (3 x 4 = 12 rows) and a just-too-long one (5 x 4 = 20 rows), plus decodes.
      {"Mixed_Llama8B_Bf16_Block16",
       32,
       8,
       128,
       16,
       false,
       {{37, 100}, {1, 17}, {130, 130}, {3, 50}, {1, 2000}, {5, 300}}},
      {"Mixed_Llama8B_Int8_Block32",
       32,
       8,
       128,
       32,
       true,
       {{37, 100}, {1, 17}, {130, 130}, {3, 50}, {1, 2000}, {5, 300}}},
      {"LongChunk_Llama8B_Bf16", 32, 8, 128, 16, false, {{200, 700}, {1, 333}}},
      // Llama-3-70B attention: 64 q heads, 8 KV heads (group 8).
      {"Mixed_Llama70B_Int8_Block16", 64, 8, 128, 16, true, {{1, 1500}, {40, 100}, {2, 64}}},
      // MHA (group 1: up to 16 queries in the decode kernel), head_dim 64.
      {"Mixed_Mha64_Bf16_Block16", 8, 8, 64, 16, false, {{1, 33}, {20, 77}, {16, 16}, {1, 1}}},
      {"Mixed_Mha64_Int8_Block32", 8, 8, 64, 32, true, {{1, 33}, {20, 77}, {16, 16}, {1, 1}}},
      // GQA at head_dim 64.
      {"Mixed_Gqa64_Bf16_Block32", 16, 4, 64, 32, false, {{1, 700}, {64, 200}, {4, 9}}},
      // MQA: group 32 fills two decode row tiles; group 16 one.
      {"Mixed_Mqa128_Bf16_Block16", 32, 1, 128, 16, false, {{1, 500}, {2, 129}, {1, 1}}},
      {"Mixed_Mqa128_Int8_Block16", 32, 1, 128, 16, true, {{1, 500}, {2, 129}, {1, 1}}},
      {"Mixed_Mqa64_Int8_Block32", 16, 1, 64, 32, true, {{1, 300}, {3, 70}}},
      // Tiny fixtures (SIMT kernel for every setting).
      {"Tiny8_Bf16_Block16", 8, 4, 8, 16, false, {{1, 5}, {9, 40}, {1, 1}}},
      {"Tiny8_Int8_Block16", 8, 4, 8, 16, true, {{1, 5}, {9, 40}, {1, 1}}},
      {"Tiny32_Bf16_Block32", 8, 2, 32, 32, false, {{1, 5}, {9, 40}, {1, 1}, {2, 100}}},
      {"Tiny32_Int8_Block32", 8, 2, 32, 32, true, {{1, 5}, {9, 40}, {1, 1}, {2, 100}}},
      // A block size that is not a power of two.
      {"Mixed_Llama8B_Bf16_Block24", 32, 8, 128, 24, false, {{1, 250}, {30, 90}}},
  };
  // Graph replays: bounds far above the device lengths, padding q rows owned by no sequence.
  AttentionCase graph{"GraphBounds_Llama8B_Bf16",    32, 8, 128, 16, false,
                      {{1, 17}, {1, 1000}, {1, 300}}};
  graph.max_context_bound = 8192;
  graph.padding_rows = 3;
  cases.push_back(graph);
  graph.name = "GraphBounds_Llama8B_Int8_QueryBound";
  graph.int8 = true;
  graph.max_query_bound = 64;  // the prefill kernel is launched too, and every CTA of it exits
  cases.push_back(graph);
  // Forced split counts: one split (the decode kernel writes the output), and the maximum.
  AttentionCase splits{"Splits1_Llama8B_Bf16",         32, 8, 128, 16, false,
                       {{1, 4097}, {1, 70}, {2, 3000}}};
  splits.decode_num_splits = 1;
  cases.push_back(splits);
  splits.name = "Splits64_Llama8B_Int8";
  splits.int8 = true;
  splits.decode_num_splits = 64;
  cases.push_back(splits);
  return cases;
}

std::string ParamName(const ::testing::TestParamInfo<std::tuple<AttentionCase, bool>>& info) {
  return std::string(std::get<0>(info.param).name) +
         (std::get<1>(info.param) ? "_Reference" : "_Default");
}

INSTANTIATE_TEST_SUITE_P(Cases, PagedAttentionGpuTest,
                         ::testing::Combine(::testing::ValuesIn(Cases()), ::testing::Bool()),
                         ParamName);

// ---- Argument checks and workspace sizing: host only, no GPU needed.

PagedAttentionParams ValidDecodeParams() {
  // Fake, 256-byte aligned device addresses: these tests never launch.
  auto* fake = reinterpret_cast<uint8_t*>(uintptr_t{1} << 40);
  PagedAttentionParams p;
  p.q = reinterpret_cast<const __nv_bfloat16*>(fake);
  p.out = reinterpret_cast<__nv_bfloat16*>(fake + 4096);
  p.cache = {.keys = fake + 8192,
             .values = fake + 12288,
             .num_blocks = 4096,
             .block_size = 16,
             .num_kv_heads = 8,
             .head_dim = 128};
  p.block_tables = reinterpret_cast<const int32_t*>(fake + 16384);
  p.max_blocks_per_sequence = 256;
  p.query_starts = reinterpret_cast<const int32_t*>(fake + 20480);
  p.context_lengths = reinterpret_cast<const int32_t*>(fake + 24576);
  p.num_sequences = 16;
  p.num_q_rows = 16;
  p.num_heads = 32;
  p.num_kv_heads = 8;
  p.head_dim = 128;
  p.max_query_length = 1;
  p.max_context_length = 4096;
  p.scale = 0.088f;
  return p;
}

TEST(PagedAttentionArgumentsTest, RejectsBadFieldsByName) {
  auto expect_invalid = [](const PagedAttentionParams& p, const char* field) {
    const absl::Status status = PagedAttention(p, nullptr);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(field), std::string::npos) << status;
  };
  PagedAttentionParams p = ValidDecodeParams();
  p.head_dim = p.cache.head_dim = 96;
  expect_invalid(p, "head_dim");
  p = ValidDecodeParams();
  p.num_kv_heads = p.cache.num_kv_heads = 5;
  expect_invalid(p, "num_kv_heads");
  p = ValidDecodeParams();
  p.cache.head_dim = 64;
  expect_invalid(p, "cache.head_dim");
  p = ValidDecodeParams();
  p.max_blocks_per_sequence = 255;  // 255 * 16 < 4096
  expect_invalid(p, "max_blocks_per_sequence");
  p = ValidDecodeParams();
  p.block_tables = nullptr;
  expect_invalid(p, "block_tables");
  p = ValidDecodeParams();
  p.cache.int8 = true;
  expect_invalid(p, "cache.key_scales");
  p = ValidDecodeParams();
  p.q = reinterpret_cast<const __nv_bfloat16*>(reinterpret_cast<uintptr_t>(p.q) + 2);
  expect_invalid(p, "q must be 16-byte aligned");
  p = ValidDecodeParams();
  p.decode_num_splits = 65;
  expect_invalid(p, "decode_num_splits");
  p = ValidDecodeParams();
  ASSERT_GT(PagedAttentionWorkspaceBytes(p), 0u);
  p.workspace = reinterpret_cast<void*>(uintptr_t{1} << 41);
  p.workspace_bytes = PagedAttentionWorkspaceBytes(p) - 1;
  expect_invalid(p, "workspace");
}

TEST(PagedAttentionArgumentsTest, WorkspaceDependsOnlyOnHostFields) {
  PagedAttentionParams p = ValidDecodeParams();
  const size_t bytes = PagedAttentionWorkspaceBytes(p);
  // 16 sequences x 8 KV heads = 128 decode CTAs per split; splits = min(4096 / 256, 1024 / 128).
  EXPECT_EQ(bytes, size_t{8} * 128 * 16 * (128 + 1) * sizeof(float));
  p.decode_num_splits = 1;  // the decode kernel writes the output itself
  EXPECT_EQ(PagedAttentionWorkspaceBytes(p), 0u);
  p = ValidDecodeParams();
  p.force_reference_kernel = true;
  EXPECT_EQ(PagedAttentionWorkspaceBytes(p), 0u);
  p = ValidDecodeParams();
  p.head_dim = p.cache.head_dim = 32;  // SIMT kernel
  EXPECT_EQ(PagedAttentionWorkspaceBytes(p), 0u);
}

}  // namespace
}  // namespace flatfleet::cuda
