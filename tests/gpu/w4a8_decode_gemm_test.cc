// The decode W4A8 GEMM (kernels/cuda/w4a8_decode_gemm.h), every kernel (auto, narrow, wide,
// simple, split-K with 2, 4, 8 warps and the heuristic's split, streaming, and pipelined with 16
// and 32 channels per CTA), against the CPU reference
// quant::GemmW4A8 followed by the epilogue addition, and against today's two-kernel GPU path
// (GemmW4A8 into float32, then AddBias with a float32 bias). Tolerance 0 everywhere: the integer
// group sums are exact, the fold uses the reference's order and fmaf, and the epilogue is one
// float32 multiplication, one float32 addition and one round-to-nearest-even to bf16, each
// spelled out on both sides, so every output must be identical bit for bit. Outputs are
// poisoned (0xFF bytes) first, and the gaps of a row stride must stay poisoned.
#include "kernels/cuda/w4a8_decode_gemm.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_gemm.h"
#include "kernels/cuda/w4a8_decode_gemm_launch.h"
#include "tests/gpu/decode_gemm_test_util.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/ops_test_util.h"
#include "tests/gpu/w4a8_gemm_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

struct DecodeCase {
  int64_t m, n, k, group_size;  // group_size == k: per channel
  bool zero_points;
};

std::string CaseName(const DecodeCase& c) {
  return absl::StrCat("m", c.m, "_n", c.n, "_k", c.k, "_g", c.group_size,
                      c.zero_points ? "_zp" : "_sym");
}

using testing::RandomInt4Weights;

const char* KernelName(W4A8DecodeKernel kernel) {
  switch (kernel) {
    case W4A8DecodeKernel::kAuto:
      return "auto";
    case W4A8DecodeKernel::kTensorCoreNarrow:
      return "narrow";
    case W4A8DecodeKernel::kTensorCoreWide:
      return "wide";
    case W4A8DecodeKernel::kSimple:
      return "simple";
    case W4A8DecodeKernel::kSplitK:
      return "split-K";
    case W4A8DecodeKernel::kStreaming:
      return "streaming";
    case W4A8DecodeKernel::kPipelined:
      return "pipelined";
  }
  return "?";
}

struct KernelChoice {
  W4A8DecodeKernel kernel;
  int split;                   // kSplitK only; 0: the heuristic's
  int pipelined_channels = 0;  // kPipelined only; 0: the heuristic's
};

// Every kernel that can run the case: split-K only when its groups are whole windows, streaming
// also when there are at most 512 groups.
std::vector<KernelChoice> KernelsFor(const DecodeCase& c) {
  std::vector<KernelChoice> kernels = {{W4A8DecodeKernel::kAuto, 0},
                                       {W4A8DecodeKernel::kTensorCoreNarrow, 0},
                                       {W4A8DecodeKernel::kTensorCoreWide, 0},
                                       {W4A8DecodeKernel::kSimple, 0}};
  if (c.group_size % 128 == 0) {
    for (int split : {0, 2, 4, 8}) kernels.push_back({W4A8DecodeKernel::kSplitK, split});
  }
  if (W4A8StreamingSupports(c.k, c.group_size)) {
    kernels.push_back({W4A8DecodeKernel::kStreaming, 0});
  }
  if (W4A8PipelinedSupports(c.k, c.group_size)) {
    for (int channels : {0, 16, 32}) kernels.push_back({W4A8DecodeKernel::kPipelined, 0, channels});
  }
  return kernels;
}

// Runs every kernel, both output types, with and without the epilogue addition, with and
// without a row stride, on one random problem; checks each output against the CPU reference and
// (with the addition) against GemmW4A8 + AddBias on the GPU.
void CheckCase(const DecodeCase& c) {
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const auto x = testing::RandomInt8PerRow(c.m, c.k, rng);
  const auto w = RandomInt4Weights(c.n, c.k, c.group_size, c.zero_points, rng);
  std::vector<float> add(c.n);
  for (float& v : add) {
    v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    if (v == 0.0f) v = 0.5f;
  }
  const auto expected = quant::GemmW4A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const bool unsigned_nibbles = packed->signedness == quant::Signedness::kUnsigned;

  DeviceBuffer<int8_t> d_x(x.codes);
  DeviceBuffer<uint16_t> d_xs(x.scales), d_ws(w.scales);
  DeviceBuffer<uint32_t> d_w(packed->words);
  DeviceBuffer<int8_t> d_zeros(c.zero_points ? w.zero_points : std::vector<int8_t>{0});
  DeviceBuffer<float> d_add(add);
  ASSERT_NE(d_w.get(), nullptr) << "out of device memory";

  // Today's path, once: the float32 GEMM result (checked against the reference too).
  DeviceBuffer<float> d_gemm(c.m * c.n);
  ASSERT_TRUE(GemmW4A8({.m = c.m,
                        .n = c.n,
                        .k = c.k,
                        .group_size = c.group_size,
                        .x_codes = d_x.get(),
                        .x_scales = d_xs.get(),
                        .w_words = d_w.get(),
                        .w_unsigned_nibbles = unsigned_nibbles,
                        .w_scales = d_ws.get(),
                        .w_zero_points = c.zero_points ? d_zeros.get() : nullptr,
                        .y = d_gemm.get()},
                       nullptr)
                  .ok());

  for (GemmElementType y_type : {GemmElementType::kFloat32, GemmElementType::kBf16}) {
    const int64_t size = y_type == GemmElementType::kBf16 ? 2 : 4;
    for (int64_t pad : {0, 3}) {
      const int64_t y_stride = c.n + pad;
      const int64_t y_bytes = ((c.m - 1) * y_stride + c.n) * size;
      for (bool with_add : {false, true}) {
        const std::vector<uint8_t> want = testing::ExpectedBytes(
            expected->output, with_add ? add.data() : nullptr, c.m, c.n, y_stride, y_type);
        if (with_add) {  // the two-kernel path gives the same bytes
          DeviceBuffer<uint8_t> d_two(y_bytes);
          FF_CUDA_ASSERT(cudaMemset(d_two.get(), 0xff, y_bytes));
          ASSERT_TRUE(AddBias({.rows = c.m,
                               .cols = c.n,
                               .x = d_gemm.get(),
                               .bias = d_add.get(),
                               .bias_type = GemmElementType::kFloat32,
                               .y = d_two.get(),
                               .y_stride = y_stride,
                               .y_type = y_type},
                              nullptr)
                          .ok());
          FF_CUDA_ASSERT(cudaDeviceSynchronize());
          EXPECT_TRUE(testing::SameBytes(want, d_two.ToHost(), size)) << "GemmW4A8 + AddBias";
        }
        for (const auto [kernel, split, channels] : KernelsFor(c)) {
          SCOPED_TRACE(absl::StrCat(KernelName(kernel), " split ", split, " channels ", channels,
                                    y_type == GemmElementType::kBf16 ? " bf16" : " float32",
                                    " y_stride ", y_stride, with_add ? " with add" : ""));
          DeviceBuffer<uint8_t> d_y(y_bytes);
          FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xff, y_bytes));
          const absl::Status status =
              GemmW4A8Decode({.m = c.m,
                              .n = c.n,
                              .k = c.k,
                              .group_size = c.group_size,
                              .x_codes = d_x.get(),
                              .x_scales = d_xs.get(),
                              .w_words = d_w.get(),
                              .w_unsigned_nibbles = unsigned_nibbles,
                              .w_scales = d_ws.get(),
                              .w_zero_points = c.zero_points ? d_zeros.get() : nullptr,
                              .epilogue_add = with_add ? d_add.get() : nullptr,
                              .y = d_y.get(),
                              .y_stride = y_stride,
                              .y_type = y_type,
                              .kernel = kernel,
                              .split = split,
                              .pipelined_channels = channels},
                             nullptr);
          ASSERT_TRUE(status.ok()) << status;
          FF_CUDA_ASSERT(cudaDeviceSynchronize());
          EXPECT_TRUE(testing::SameBytes(want, d_y.ToHost(), size));
        }
      }
    }
  }
}

class W4A8DecodeGemmGpuTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(W4A8DecodeGemmGpuTest, MatchesReferenceAndTwoKernelPathBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  CheckCase(GetParam());
}

// Every m in 1..16; odd n. Group sizes that are multiples of 128 (128, 256, 384, 640, per
// channel with k % 128 == 0) take the shared-memory ring loop and the split-K kernel, the others
// (32, 64, 96, per channel with k = 160) the batch loop, including k not a multiple of 128 (a
// short last window: 32, 96, 160, 288); single-window problems (k = 32, 128) leave most of the
// ring's prologue empty. For split-K, window counts that no split divides (1, 3, 5, 9, 15) leave
// the last round short, and groups of 3 or 5 windows straddle rounds. For streaming (stages of
// 32 windows): k = 5760 is 45 windows (a short last stage, groups of 3 windows straddling the
// stage boundary), k = 65536 with group 128 fills its 512-group tables, k = 14336 and 8192 (below)
// take several stages.
INSTANTIATE_TEST_SUITE_P(
    Shapes, W4A8DecodeGemmGpuTest,
    ::testing::Values(DecodeCase{1, 64, 256, 128, false}, DecodeCase{1, 77, 4096, 128, true},
                      DecodeCase{1, 8, 32, 32, true}, DecodeCase{2, 130, 512, 32, false},
                      DecodeCase{2, 77, 1024, 64, true}, DecodeCase{3, 130, 1024, 64, false},
                      DecodeCase{3, 33, 160, 32, true}, DecodeCase{7, 200, 384, 384, true},
                      DecodeCase{7, 77, 2048, 128, false}, DecodeCase{8, 96, 4096, 128, true},
                      DecodeCase{8, 130, 288, 96, false}, DecodeCase{15, 130, 2048, 128, false},
                      DecodeCase{15, 41, 96, 96, true}, DecodeCase{16, 77, 1024, 32, true},
                      DecodeCase{16, 257, 4096, 4096, false}, DecodeCase{16, 130, 2560, 64, true},
                      DecodeCase{5, 1000, 14336, 128, true}, DecodeCase{4, 300, 8192, 8192, true},
                      DecodeCase{6, 70, 1024, 256, true}, DecodeCase{11, 90, 1280, 640, false},
                      DecodeCase{9, 45, 160, 160, true}, DecodeCase{12, 24, 128, 128, false},
                      DecodeCase{10, 99, 1152, 128, true}, DecodeCase{13, 57, 640, 128, false},
                      DecodeCase{14, 8, 1920, 384, true}, DecodeCase{1, 3, 384, 128, false},
                      DecodeCase{3, 40, 5760, 384, true}, DecodeCase{16, 19, 5760, 384, false},
                      DecodeCase{2, 24, 65536, 128, true}),
    [](const auto& info) { return CaseName(info.param); });

// The real layers (group 128): Llama-3-8B fused q/k/v, o, fused gate|up, down at m = 1 and 16;
// Llama-3-70B's at m = 1 only (the CPU reference of 57344 x 8192 alone is 470M weights).
INSTANTIATE_TEST_SUITE_P(
    RealShapes, W4A8DecodeGemmGpuTest,
    ::testing::Values(DecodeCase{1, 6144, 4096, 128, false}, DecodeCase{16, 6144, 4096, 128, true},
                      DecodeCase{1, 4096, 4096, 128, true}, DecodeCase{16, 4096, 4096, 128, false},
                      DecodeCase{1, 28672, 4096, 128, false},
                      DecodeCase{16, 28672, 4096, 128, true}, DecodeCase{1, 4096, 14336, 128, true},
                      DecodeCase{16, 4096, 14336, 128, false},
                      DecodeCase{1, 10240, 8192, 128, true}, DecodeCase{1, 8192, 8192, 128, false},
                      DecodeCase{1, 57344, 8192, 128, true},
                      DecodeCase{1, 8192, 28672, 128, false}),
    [](const auto& info) { return CaseName(info.param); });

// Tensor-parallel halves (TP2: q/k/v and gate|up split by output, o and down by input) of
// Llama-3-8B at m = 1 and 16 and of Llama-3-70B at m = 1 (16 where the reference stays small),
// and the 70B layers at m = 16 that the split-K heuristic splits. Mixtral-8x7B's attention and
// expert layers (hidden 4096, intermediate 14336) have exactly the Llama-3-8B shapes above.
INSTANTIATE_TEST_SUITE_P(
    TensorParallelShapes, W4A8DecodeGemmGpuTest,
    ::testing::Values(DecodeCase{1, 3072, 4096, 128, true}, DecodeCase{16, 3072, 4096, 128, false},
                      DecodeCase{1, 4096, 2048, 128, false}, DecodeCase{16, 4096, 2048, 128, true},
                      DecodeCase{1, 14336, 4096, 128, true},
                      DecodeCase{16, 14336, 4096, 128, false},
                      DecodeCase{1, 4096, 7168, 128, false}, DecodeCase{16, 4096, 7168, 128, true},
                      DecodeCase{1, 5120, 8192, 128, false}, DecodeCase{16, 5120, 8192, 128, true},
                      DecodeCase{1, 8192, 4096, 128, true}, DecodeCase{16, 8192, 4096, 128, false},
                      DecodeCase{1, 28672, 8192, 128, false}, DecodeCase{1, 8192, 14336, 128, true},
                      DecodeCase{16, 8192, 8192, 128, true},
                      DecodeCase{16, 10240, 8192, 128, false}),
    [](const auto& info) { return CaseName(info.param); });

// kPipelined, the kernel kAuto runs on every real layer, at every m = 1..16: one random problem
// of 16 rows per shape and one CPU reference of it (rows are independent, so the first m rows of
// x give the first m rows of the result), then every m with 16 and 32 channels per CTA, float32
// and bf16 outputs, with and without the epilogue addition and a row stride (odd strides), and
// kAuto once per m. Tolerance 0, as above (exact int32 sums, the reference's fold order and
// fmaf, one rounding per epilogue operation). Outputs poisoned (0xFF), stride gaps checked.
struct RealShape {
  int64_t n, k;
  bool zero_points;
};

class W4A8DecodePipelinedGpuTest : public ::testing::TestWithParam<RealShape> {};

TEST_P(W4A8DecodePipelinedGpuTest, EveryRowCountMatchesTheReferenceBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  const RealShape shape = GetParam();
  constexpr int64_t kRows = 16, kGroup = 128;
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const auto x = testing::RandomInt8PerRow(kRows, shape.k, rng);
  const auto w = RandomInt4Weights(shape.n, shape.k, kGroup, shape.zero_points, rng);
  std::vector<float> add(shape.n);
  for (float& v : add) {
    v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    if (v == 0.0f) v = 0.5f;
  }
  const auto expected = quant::GemmW4A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const bool unsigned_nibbles = packed->signedness == quant::Signedness::kUnsigned;

  DeviceBuffer<int8_t> d_x(x.codes);
  DeviceBuffer<uint16_t> d_xs(x.scales), d_ws(w.scales);
  DeviceBuffer<uint32_t> d_w(packed->words);
  DeviceBuffer<int8_t> d_zeros(shape.zero_points ? w.zero_points : std::vector<int8_t>{0});
  DeviceBuffer<float> d_add(add);
  ASSERT_NE(d_w.get(), nullptr) << "out of device memory";

  struct Run {
    W4A8DecodeKernel kernel;
    int channels;
    GemmElementType y_type;
    int64_t pad;
    bool with_add;
  };
  for (int64_t m = 1; m <= kRows; ++m) {
    const std::vector<float> want_rows(expected->output.begin(),
                                       expected->output.begin() + m * shape.n);
    std::vector<Run> runs = {{W4A8DecodeKernel::kAuto, 0, GemmElementType::kBf16, 0, true}};
    for (int channels : {16, 32}) {
      for (GemmElementType y_type : {GemmElementType::kFloat32, GemmElementType::kBf16}) {
        // Across m, every combination of stride (none, odd) and addition (off, on) per type.
        const int64_t pad = m % 3 == 0 ? 0 : 2 * m + 1;
        const bool with_add = (m % 2 == 1) != (y_type == GemmElementType::kBf16);
        runs.push_back({W4A8DecodeKernel::kPipelined, channels, y_type, pad, with_add});
      }
    }
    for (const Run& run : runs) {
      SCOPED_TRACE(absl::StrCat("m ", m, " ", KernelName(run.kernel), " channels ", run.channels,
                                run.y_type == GemmElementType::kBf16 ? " bf16" : " float32",
                                " pad ", run.pad, run.with_add ? " with add" : ""));
      const int64_t size = run.y_type == GemmElementType::kBf16 ? 2 : 4;
      const int64_t y_stride = shape.n + run.pad;
      const int64_t y_bytes = ((m - 1) * y_stride + shape.n) * size;
      const std::vector<uint8_t> want = testing::ExpectedBytes(
          want_rows, run.with_add ? add.data() : nullptr, m, shape.n, y_stride, run.y_type);
      DeviceBuffer<uint8_t> d_y(y_bytes);
      FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xff, y_bytes));
      const absl::Status status =
          GemmW4A8Decode({.m = m,
                          .n = shape.n,
                          .k = shape.k,
                          .group_size = kGroup,
                          .x_codes = d_x.get(),
                          .x_scales = d_xs.get(),
                          .w_words = d_w.get(),
                          .w_unsigned_nibbles = unsigned_nibbles,
                          .w_scales = d_ws.get(),
                          .w_zero_points = shape.zero_points ? d_zeros.get() : nullptr,
                          .epilogue_add = run.with_add ? d_add.get() : nullptr,
                          .y = d_y.get(),
                          .y_stride = y_stride,
                          .y_type = run.y_type,
                          .kernel = run.kernel,
                          .pipelined_channels = run.channels},
                         nullptr);
      ASSERT_TRUE(status.ok()) << status;
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      ASSERT_TRUE(testing::SameBytes(want, d_y.ToHost(), size));
    }
  }
}

std::string RealShapeName(const ::testing::TestParamInfo<RealShape>& info) {
  return absl::StrCat("n", info.param.n, "_k", info.param.k,
                      info.param.zero_points ? "_zp" : "_sym");
}

// Llama-3-8B / Mixtral-8x7B (q/k/v, o, gate|up, down) and their TP2 halves, plus odd n and K
// that is no whole number of 512-element stages (4224: 33 windows; 2176: 17).
INSTANTIATE_TEST_SUITE_P(
    Llama8B, W4A8DecodePipelinedGpuTest,
    ::testing::Values(RealShape{6144, 4096, false}, RealShape{4096, 4096, true},
                      RealShape{28672, 4096, false}, RealShape{4096, 14336, true},
                      RealShape{3072, 4096, true}, RealShape{4096, 2048, false},
                      RealShape{14336, 4096, true}, RealShape{4096, 7168, false},
                      RealShape{4099, 4224, true}, RealShape{1001, 2176, false},
                      RealShape{8463, 1024, true}),
    RealShapeName);

// Llama-3-70B (q/k/v, o, gate|up, down) and their TP2 halves: the CPU reference of 16 rows of
// these is the bulk of the suite's time.
INSTANTIATE_TEST_SUITE_P(
    Llama70B, W4A8DecodePipelinedGpuTest,
    ::testing::Values(RealShape{10240, 8192, true}, RealShape{8192, 8192, false},
                      RealShape{57344, 8192, false}, RealShape{8192, 28672, true},
                      RealShape{5120, 8192, false}, RealShape{28672, 8192, true},
                      RealShape{8192, 4096, false}, RealShape{8192, 14336, true}),
    RealShapeName);

// Argument checks run on the host before any launch: no GPU needed (fake device pointers).
using testing::FakeDevicePointer;

DeviceW4A8DecodeGemm ShapeArgs() { return testing::FakeW4A8ShapeArgs<DeviceW4A8DecodeGemm>(4); }

::testing::AssertionResult FailsMentioning(const DeviceW4A8DecodeGemm& args, absl::StatusCode code,
                                           const std::string& text) {
  return testing::StatusMentions(GemmW4A8Decode(args, nullptr), code, text);
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(W4A8DecodeGemmArgsTest, RejectsShapesItCannotRun) {
  testing::ExpectSharedW4A8ShapeChecks<DeviceW4A8DecodeGemm>(
      [](const DeviceW4A8DecodeGemm& args) { return GemmW4A8Decode(args, nullptr); }, 4,
      {0, 17, -1}, "m must be in 1..16");
}

TEST(W4A8DecodeGemmArgsTest, RejectsNullAndMisalignedPointers) {
  testing::ExpectSharedW4A8PointerChecks<DeviceW4A8DecodeGemm>(
      [](const DeviceW4A8DecodeGemm& args) { return GemmW4A8Decode(args, nullptr); }, 4);
}

TEST(W4A8DecodeGemmArgsTest, RejectsSplitKWhereItCannotRun) {
  auto args = ShapeArgs();
  args.kernel = W4A8DecodeKernel::kSplitK;
  args.group_size = 64;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "kSplitK needs group_size a multiple of 128"));
  for (int split : {1, 3, 16, -2}) {
    args = ShapeArgs();
    args.kernel = W4A8DecodeKernel::kSplitK;
    args.split = split;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "split must be 0, 2, 4 or 8")) << split;
  }
  args = ShapeArgs();  // valid split-K shape: the call stops at the null y
  args.kernel = W4A8DecodeKernel::kSplitK;
  args.split = 4;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null"));
}

// The choice table of docs/GPU_ENGINE.md on an H200 (132 SMs; one wave: 2640, 2640, 2112 warps
// for split 2, 4, 8; at least 2 windows of 128 per warp).
TEST(W4A8DecodeGemmArgsTest, SplitHeuristicFollowsTheDocumentedTable) {
  struct Row {
    int64_t n, k;
    int split;
  };
  for (const Row& row :
       {Row{6144, 4096, 2}, Row{4096, 4096, 4}, Row{28672, 4096, 1}, Row{4096, 14336, 4},
        Row{3072, 4096, 4}, Row{4096, 2048, 4}, Row{14336, 4096, 1}, Row{4096, 7168, 4},
        Row{10240, 8192, 2}, Row{8192, 8192, 2}, Row{57344, 8192, 1}, Row{8192, 28672, 2},
        Row{5120, 8192, 4}, Row{8192, 4096, 2}, Row{28672, 8192, 1}, Row{8192, 14336, 2}}) {
    for (int64_t m : {1, 16}) {
      EXPECT_EQ(ChooseW4A8DecodeSplit(m, row.n, row.k, 128, 132), row.split)
          << row.n << " x " << row.k << " m " << m;
    }
  }
  // Few windows cap the split (each warp keeps at least 2): k = 512 is 4 windows.
  EXPECT_EQ(ChooseW4A8DecodeSplit(1, 64, 512, 128, 132), 2);
  EXPECT_EQ(ChooseW4A8DecodeSplit(1, 64, 256, 128, 132), 1);
  EXPECT_EQ(ChooseW4A8DecodeSplit(1, 64, 2048, 128, 132), 8);
  // Groups that are not whole windows never split; per channel (group = k) does.
  EXPECT_EQ(ChooseW4A8DecodeSplit(1, 4096, 4096, 64, 132), 1);
  EXPECT_EQ(ChooseW4A8DecodeSplit(1, 4096, 4096, 4096, 132), 4);
  // A GPU with few SMs cannot hold the split CTAs in one wave.
  EXPECT_EQ(ChooseW4A8DecodeSplit(1, 4096, 4096, 128, 8), 1);
}

// The residency the heuristic assumes is the device's (registers and shared memory of the split
// kernels as compiled).
TEST(W4A8DecodeSplitResidencyGpuTest, MatchesTheHeuristicsTable) {
  FF_SKIP_WITHOUT_GPU();
  for (int split : {2, 4, 8}) {
    EXPECT_EQ(internal::W4A8SplitKernelResidentWarps(split), W4A8SplitResidentWarpsPerSm(split))
        << "split " << split << ": update W4A8SplitResidentWarpsPerSm and the docs' table";
  }
}

TEST(W4A8DecodeGemmArgsTest, RejectsStreamingWhereItCannotRun) {
  auto args = ShapeArgs();
  args.kernel = W4A8DecodeKernel::kStreaming;
  args.group_size = 64;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "kStreaming needs group_size a multiple of 128"));
  args = ShapeArgs();
  args.kernel = W4A8DecodeKernel::kStreaming;
  args.k = 513 * 128;  // 513 groups: more than its shared-memory tables hold
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "at most 512 groups"));
  args = ShapeArgs();  // valid streaming shape: the call stops at the null y
  args.kernel = W4A8DecodeKernel::kStreaming;
  args.k = 512 * 128;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null"));
}

// The previous kAuto rule (docs/GPU_ENGINE.md; W4A8DecodePreviousAutoKernel, the benchmark's
// comparison): streaming where it measured faster, else the split heuristic, else narrow.
TEST(W4A8DecodeGemmArgsTest, PreviousAutoKernelFollowsTheDocumentedTable) {
  // Streaming where it measured faster: n < 14336, k > 2048, and k >= 2n above 8 rows.
  for (int64_t m : {1, 8, 16}) {
    for (int64_t n : {4096, 8192, 10240}) {
      for (int64_t k : {4096, 8192, 28672}) {
        const bool streaming = m <= 8 || k >= 2 * n;
        for (int64_t group : {int64_t{128}, k}) {
          const W4A8DecodeKernel chosen = W4A8DecodePreviousAutoKernel(m, n, k, group, 132);
          EXPECT_EQ(chosen == W4A8DecodeKernel::kStreaming, streaming)
              << m << " x " << n << " x " << k << " g" << group;
        }
      }
    }
  }
  // The wide layers and short K keep the split-K / narrow rule.
  for (int64_t m : {1, 16}) {
    EXPECT_NE(W4A8DecodePreviousAutoKernel(m, 57344, 8192, 128, 132), W4A8DecodeKernel::kStreaming);
    EXPECT_NE(W4A8DecodePreviousAutoKernel(m, 28672, 4096, 128, 132), W4A8DecodeKernel::kStreaming);
    EXPECT_NE(W4A8DecodePreviousAutoKernel(m, 14336, 4096, 128, 132), W4A8DecodeKernel::kStreaming);
    EXPECT_NE(W4A8DecodePreviousAutoKernel(m, 4096, 2048, 128, 132), W4A8DecodeKernel::kStreaming);
  }
  EXPECT_TRUE(W4A8StreamingSupports(512 * 128, 128));
  EXPECT_FALSE(W4A8StreamingSupports(513 * 128, 128));
  // Not streaming: groups that are not whole windows (split-K cannot run either), or too many.
  EXPECT_EQ(W4A8DecodePreviousAutoKernel(1, 4096, 4096, 64, 132),
            W4A8DecodeKernel::kTensorCoreNarrow);
  EXPECT_EQ(W4A8DecodePreviousAutoKernel(1, 64, 513 * 128, 128, 132), W4A8DecodeKernel::kSplitK);
  EXPECT_EQ(W4A8DecodePreviousAutoKernel(1, 57344, 513 * 128, 128, 132),
            W4A8DecodeKernel::kTensorCoreNarrow);
}

// kAuto now: the pipelined kernel where it measured faster (W4A8PipelinedWins: n >= 8192 and
// n * k >= 8192^2, above 8 rows, or at 5..8 rows with k <= 8192), else the previous rule; groups
// of 32 or 64 always take the narrow kernel.
TEST(W4A8DecodeGemmArgsTest, AutoKernelFollowsTheDocumentedTable) {
  for (int64_t m = 1; m <= 16; ++m) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{4096, 4096},
                        {6144, 4096},
                        {28672, 4096},
                        {4096, 14336},
                        {10240, 8192},
                        {8192, 8192},
                        {57344, 8192},
                        {8192, 28672},
                        {3072, 4096},
                        {4096, 2048},
                        {14336, 4096},
                        {4096, 7168},
                        {64, 128}}) {
      const bool big = n >= 8192 && n * k >= 8192 * 8192;
      const bool pipelined = m > 8 ? big : m > 4 && big && k <= 8192;
      EXPECT_EQ(W4A8PipelinedWins(m, n, k), pipelined) << m << " x " << n << " x " << k;
      for (int64_t group : {int64_t{128}, int64_t{256}, k}) {
        if (k % group != 0) continue;
        const W4A8DecodeKernel want = pipelined ? W4A8DecodeKernel::kPipelined
                                                : W4A8DecodePreviousAutoKernel(m, n, k, group, 132);
        EXPECT_EQ(ChooseW4A8DecodeAutoKernel(m, n, k, group, 132), want)
            << m << " x " << n << " x " << k << " g" << group;
      }
      EXPECT_EQ(ChooseW4A8DecodeAutoKernel(m, n, k, 64, 132), W4A8DecodeKernel::kTensorCoreNarrow);
      EXPECT_EQ(ChooseW4A8DecodeAutoKernel(m, n, k, 32, 132), W4A8DecodeKernel::kTensorCoreNarrow);
    }
  }
  // Spot checks of the measured table.
  EXPECT_EQ(ChooseW4A8DecodeAutoKernel(16, 57344, 8192, 128, 132), W4A8DecodeKernel::kPipelined);
  EXPECT_EQ(ChooseW4A8DecodeAutoKernel(8, 8192, 28672, 128, 132),
            W4A8DecodePreviousAutoKernel(8, 8192, 28672, 128, 132));
  EXPECT_EQ(ChooseW4A8DecodeAutoKernel(1, 10240, 8192, 128, 132),
            W4A8DecodePreviousAutoKernel(1, 10240, 8192, 128, 132));
  EXPECT_EQ(ChooseW4A8DecodeAutoKernel(16, 14336, 4096, 128, 132),
            W4A8DecodePreviousAutoKernel(16, 14336, 4096, 128, 132));
  EXPECT_TRUE(W4A8PipelinedSupports(4096, 128));
  EXPECT_TRUE(W4A8PipelinedSupports(4096, 4096));
  EXPECT_TRUE(W4A8PipelinedSupports(1152, 384));
  EXPECT_FALSE(W4A8PipelinedSupports(4096, 64));
  EXPECT_FALSE(W4A8PipelinedSupports(4096, 96));
  EXPECT_EQ(ChooseW4A8PipelinedChannels(1, 4096, 132), 16);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(1, 8192, 132), 16);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(1, 8447, 132), 16);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(1, 8448, 132), 32);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(1, 10240, 132), 32);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(1, 57344, 132), 32);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(1, 4096, 8), 32);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(9, 4096, 132), 32);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(16, 8192, 132), 32);
  EXPECT_EQ(ChooseW4A8PipelinedChannels(8, 8192, 132), 16);
}

TEST(W4A8DecodeGemmArgsTest, RejectsPipelinedWhereItCannotRun) {
  for (auto [group_size, k] : {std::pair<int64_t, int64_t>{32, 512}, {64, 512}, {288, 576}}) {
    auto args = ShapeArgs();
    args.k = k;
    args.group_size = group_size;
    args.kernel = W4A8DecodeKernel::kPipelined;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "kPipelined needs group_size a multiple of 128"))
        << group_size;
  }
  for (int channels : {8, 64, -16, 1}) {
    auto args = ShapeArgs();
    args.kernel = W4A8DecodeKernel::kPipelined;
    args.pipelined_channels = channels;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "pipelined_channels must be 0, 16 or 32"))
        << channels;
  }
  for (int channels : {0, 16, 32}) {  // valid: the call stops at the null y
    auto args = ShapeArgs();
    args.kernel = W4A8DecodeKernel::kPipelined;
    args.pipelined_channels = channels;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null")) << channels;
  }
}

// The residency the in-flight bytes assume (the kernel's header): at least what its
// __launch_bounds__ ask for (4 CTAs per SM with 16 channels, 3 with 32), for m <= 8 and m > 8,
// with the dynamic shared memory opted in.
TEST(W4A8DecodePipelinedResidencyGpuTest, MeetsTheLaunchBounds) {
  FF_SKIP_WITHOUT_GPU();
  for (int channels : {16, 32}) {
    for (bool high_rows : {false, true}) {
      EXPECT_GE(internal::W4A8PipelinedKernelResidentCtas(channels, high_rows),
                internal::W4A8PipelinedExpectedResidentCtas(channels))
          << channels << " channels, " << (high_rows ? "m > 8" : "m <= 8");
    }
  }
}

// 2 CTAs of 256 threads per SM for m > 8, 3 for m <= 8: what the kernel's __launch_bounds__ ask
// for and what its in-flight bytes per SM assume (docs/GPU_ENGINE.md).
TEST(W4A8DecodeStreamingResidencyGpuTest, MatchesTheLaunchBounds) {
  FF_SKIP_WITHOUT_GPU();
  EXPECT_EQ(internal::W4A8StreamingExpectedResidentCtas(true), 2);
  EXPECT_EQ(internal::W4A8StreamingExpectedResidentCtas(false), 3);
  for (bool high_rows : {true, false}) {
    EXPECT_EQ(internal::W4A8StreamingKernelResidentCtas(high_rows),
              internal::W4A8StreamingExpectedResidentCtas(high_rows))
        << (high_rows ? "m > 8" : "m <= 8");
  }
}

TEST(W4A8DecodeGemmArgsTest, AutoChoosesTheNarrowKernel) {
  // The measured choice (narrow as fast or faster on every real shape, H200).
  for (int64_t n : {77, 4096, 6144, 10240, 28672, 57344}) {
    EXPECT_EQ(ChooseW4A8DecodeKernel(n), W4A8DecodeKernel::kTensorCoreNarrow) << n;
  }
}

}  // namespace
}  // namespace flatfleet::cuda
