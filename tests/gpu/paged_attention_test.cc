// Paged attention (tensor-core kernels and the SIMT reference kernel) on the GPU against the CPU
// reference CausalAttention (kernels/cpu/attention.h). The problems, the poisoning and the
// tolerance (and why) are in tests/gpu/paged_attention_test_util.h. q rows owned by no sequence
// must keep the output's poison.
#include "kernels/cuda/paged_attention.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/paged_attention_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::AttentionCase;
using testing::DeviceBuffer;
using testing::PagedAttentionProblem;

class PagedAttentionGpuTest
    : public ::testing::TestWithParam<std::tuple<AttentionCase, bool /*reference kernel*/>> {};

TEST_P(PagedAttentionGpuTest, MatchesCpuCausalAttention) {
  FF_SKIP_WITHOUT_GPU();
  const auto& [c, reference_kernel] = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const PagedAttentionProblem problem(c, rng);

  DeviceBuffer<uint16_t> d_q(problem.q_bits), d_out(problem.q_elements);
  DeviceBuffer<int32_t> d_tables(problem.block_tables), d_starts(problem.query_starts),
      d_lengths(problem.context_lengths);
  DeviceBuffer<uint16_t> d_keys(c.int8 ? std::vector<uint16_t>(1) : problem.key_pool),
      d_values(c.int8 ? std::vector<uint16_t>(1) : problem.value_pool);
  DeviceBuffer<int8_t> d_key_codes(c.int8 ? problem.key_code_pool : std::vector<int8_t>(1)),
      d_value_codes(c.int8 ? problem.value_code_pool : std::vector<int8_t>(1));
  DeviceBuffer<uint16_t> d_key_scales(c.int8 ? problem.key_scale_pool : std::vector<uint16_t>(1)),
      d_value_scales(c.int8 ? problem.value_scale_pool : std::vector<uint16_t>(1));
  ASSERT_NE(d_out.get(), nullptr);
  FF_CUDA_ASSERT(cudaMemset(d_out.get(), 0xFF, problem.q_elements * 2));

  void* keys = c.int8 ? static_cast<void*>(d_key_codes.get()) : static_cast<void*>(d_keys.get());
  void* values =
      c.int8 ? static_cast<void*>(d_value_codes.get()) : static_cast<void*>(d_values.get());
  PagedAttentionParams params =
      problem.Params(d_q.get(), d_out.get(), keys, values, d_key_scales.get(), d_value_scales.get(),
                     d_tables.get(), d_starts.get(), d_lengths.get());
  params.force_reference_kernel = reference_kernel;
  const size_t workspace_bytes = PagedAttentionWorkspaceBytes(params);
  DeviceBuffer<uint8_t> d_workspace(std::max<size_t>(workspace_bytes, 16));
  FF_CUDA_ASSERT(cudaMemset(d_workspace.get(), 0xFF, std::max<size_t>(workspace_bytes, 16)));
  params.workspace = d_workspace.get();
  params.workspace_bytes = workspace_bytes;
  const absl::Status status = PagedAttention(params, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  problem.ExpectMatches(d_out.ToHost());
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
