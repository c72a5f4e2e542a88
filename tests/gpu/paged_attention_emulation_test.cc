// The tensor-core paged-attention kernels (decode + combine, prefill) run on the CPU through the
// host warp emulator (tests/gpu/warp_emulator.h) against CausalAttention, with the GPU test's
// problems and tolerance (tests/gpu/paged_attention_test_util.h). This checks the kernels' index
// arithmetic, MMA/ldmatrix fragment layouts, causal masks, split-K partition and merges wherever
// the tests run, GPU or not; timing, cp.async ordering and the real hardware are left to
// paged_attention_test.cc on a GPU. Small shapes: every CUDA thread is a host thread here.

// clang-format off
// First, before any kernel header: CUDA keywords and intrinsics for the host.
#include "tests/gpu/warp_emulator.h"
// clang-format on

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/paged_attention_combine.cuh"
#include "kernels/cuda/paged_attention_flash.cuh"
#include "kernels/cuda/paged_attention_launch.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/paged_attention_test_util.h"

// The emulated dynamic shared memory: the kernels' `extern __shared__ smem[]`.
namespace flatfleet::cuda::internal::flash {
alignas(16) unsigned char smem[emulation::kSharedBytes];
}  // namespace flatfleet::cuda::internal::flash

namespace flatfleet::cuda {
namespace {

using testing::AttentionCase;
using testing::PagedAttentionProblem;

unsigned char* SharedMemory() { return internal::flash::smem; }

template <int kHeadDim, bool kInt8>
void RunEmulated(const internal::PagedAttentionArgs& args) {
  using emulation::Index3;
  using Decode = internal::flash::DecodeConfig<kHeadDim, kInt8>;
  using Prefill = internal::flash::PrefillConfig<kHeadDim, kInt8>;
  emulation::RunGrid(internal::flash::PagedFlashAttentionKernel<Decode, true>, args,
                     Index3{static_cast<unsigned>(args.num_splits),
                            static_cast<unsigned>(args.num_kv_heads * args.decode_row_tiles),
                            static_cast<unsigned>(args.num_sequences)},
                     Decode::kThreads);
  if (args.num_splits > 1) {
    emulation::RunGrid(internal::flash::CombineSplitsKernel<kHeadDim>, args,
                       Index3{static_cast<unsigned>(args.num_kv_heads * args.decode_row_tiles),
                              static_cast<unsigned>(args.num_sequences), 1},
                       internal::flash::kCombineThreads);
  }
  if (args.prefill_row_tiles > 0) {
    emulation::RunGrid(
        internal::flash::PagedFlashAttentionKernel<Prefill, false>, args,
        Index3{static_cast<unsigned>(args.num_kv_heads), static_cast<unsigned>(args.num_sequences),
               static_cast<unsigned>(args.prefill_row_tiles)},
        Prefill::kThreads);
  }
}

class PagedAttentionEmulationTest : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(PagedAttentionEmulationTest, MatchesCpuCausalAttention) {
  const AttentionCase& c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  PagedAttentionProblem problem(c, rng);
  ASSERT_EQ(internal::SharedAddress(SharedMemory()), 0u);

  std::vector<uint16_t> out(problem.q_elements, 0xFFFF);
  void* keys = c.int8 ? static_cast<void*>(problem.key_code_pool.data())
                      : static_cast<void*>(problem.key_pool.data());
  void* values = c.int8 ? static_cast<void*>(problem.value_code_pool.data())
                        : static_cast<void*>(problem.value_pool.data());
  PagedAttentionParams params =
      problem.Params(problem.q_bits.data(), out.data(), keys, values, problem.key_scale_pool.data(),
                     problem.value_scale_pool.data(), problem.block_tables.data(),
                     problem.query_starts.data(), problem.context_lengths.data());
  std::vector<float> workspace(PagedAttentionWorkspaceBytes(params) / sizeof(float) + 4, NAN);
  params.workspace = workspace.data();
  params.workspace_bytes = workspace.size() * sizeof(float);
  const internal::PagedAttentionArgs args = internal::ResolvePagedAttentionArgs(params);
  if (c.head_dim == 64) {
    c.int8 ? RunEmulated<64, true>(args) : RunEmulated<64, false>(args);
  } else {
    ASSERT_EQ(c.head_dim, 128);
    c.int8 ? RunEmulated<128, true>(args) : RunEmulated<128, false>(args);
  }
  problem.ExpectMatches(out);
}

std::vector<AttentionCase> EmulationCases() {
  // Group 4 at head_dim 64: single and multi-query decodes (<= 4 queries), a prefill chunk over a
  // cached prefix spanning two row tiles, a short prefill, with two and more splits.
  std::vector<AttentionCase> cases = {
      {"Gqa64_Bf16_Block16", 8, 2, 64, 16, false, {{1, 300}, {3, 70}, {1, 1}, {40, 100}, {5, 20}}},
      {"Gqa64_Int8_Block32", 8, 2, 64, 32, true, {{1, 300}, {3, 70}, {1, 1}, {40, 100}, {5, 20}}},
      // MQA with group 32 at head_dim 128: two decode row tiles per KV head.
      {"Mqa128_Bf16_Block16", 32, 1, 128, 16, false, {{1, 130}, {2, 40}}},
      // MHA: 16 queries still fit the decode kernel, 17 do not; a block size of 24.
      {"Mha64_Bf16_Block24", 4, 4, 64, 24, false, {{16, 40}, {17, 17}, {1, 600}}},
      {"Gqa128_Int8_Block16", 8, 2, 128, 16, true, {{1, 200}, {9, 150}}},
  };
  // Graph replay: bounds above the lengths, padding rows, a forced split count.
  AttentionCase graph{"GraphBounds_Gqa64_Int8", 8, 2, 64, 16, true, {{1, 520}, {2, 33}}};
  graph.max_context_bound = 4096;
  graph.max_query_bound = 40;
  graph.padding_rows = 2;
  graph.decode_num_splits = 16;
  cases.push_back(graph);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, PagedAttentionEmulationTest, ::testing::ValuesIn(EmulationCases()),
                         [](const ::testing::TestParamInfo<AttentionCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace flatfleet::cuda
