// CublasLtGemm (kernels/cuda/bf16_gemm.h) against the CPU float32 GEMM (kernels/cpu/gemm.h) of
// the same bf16-rounded operands.
//
// Tolerance. A product of two bf16 values (8-bit significands) is exact in float32, so both
// sides add the same exact products; they differ only in the order and rounding of the float32
// sums (cuBLASLt: tensor-core accumulation, maybe split-K in float32). Each rounding of a running
// sum costs at most 2^-24 of a partial sum, and partial sums are bounded by sum_k |x w| + |bias|
// <= M = |x_row| |w_row| + |bias| (Cauchy-Schwarz). With random signs the accumulated error
// grows like sqrt(k) 2^-24 M (2^-17 M at k = 16384; a host simulation of sequential float32
// sums gave 2^-22 M), so 2^-16 M is a safe bound that still catches one wrong or missing term
// (|x w| ~ M / k, i.e. 2^-12 M even at k = 4096). A bf16 output adds one rounding to nearest,
// 2^-9 relative: allowed 2^-8 |y| on top. That bound assumes one rounding of x w + bias; rounding
// x w to bf16 before adding the bias would not fit it where the two cancel (see the bias fallback
// tests below).
//
// Autotuning (CublasLtGemm::Options::autotune) is on by default, so the shape cases run the
// tuner's choice (prepared first, then y poisoned, then Run: the tuning runs write y too). Since
// the tuner may pick any candidate, AllCandidatesMatchCpuGemm runs every candidate of each case,
// with the same tolerance; biased cases there use a bias that cancels row 0 (see the bias
// fallback tests), so a candidate whose epilogue rounds twice fails.
#include "kernels/cuda/bf16_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "kernels/cpu/gemm.h"
#include "tests/gpu/bf16_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/quant/test_random.h"

namespace flatfleet::cuda {
namespace {

using testing::AllClose;
using testing::AsBf16;
using testing::Bf16BitsToFloats;
using testing::DeviceBuffer;
using testing::Poison;
using testing::RoundAllToBf16;
using testing::RoundToBf16;
using testing::ToBf16Bits;

constexpr double kAccumulationTolerance = 1.0 / (1 << 16);  // of M
constexpr double kBf16OutputTolerance = 1.0 / (1 << 8);     // of |y|

// Euclidean norm of each row of a [rows, cols] matrix.
std::vector<double> RowNorms(const std::vector<float>& values, int64_t rows, int64_t cols) {
  std::vector<double> norms(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += double{values[r * cols + c]} * values[r * cols + c];
    norms[r] = std::sqrt(sum);
  }
  return norms;
}

// The reference y = x w^T + bias on the host, and for each element a bound on the magnitudes
// it sums: |x_r| |w_c| + |bias_c| >= sum_k |x w| + |bias| (Cauchy-Schwarz; for random data
// about 1.3 times the sum itself), cheap to compute for the LM head.
struct Reference {
  std::vector<float> y, magnitude;
};
Reference HostGemm(const std::vector<float>& x, const std::vector<float>& w,
                   const std::vector<float>* bias, int64_t m, int64_t n, int64_t k) {
  Reference ref{std::vector<float>(m * n), std::vector<float>(m * n)};
  kernels::cpu::Gemm(x.data(), m,
                     kernels::cpu::PackedMatrix(w.data(), n, k, bias ? bias->data() : nullptr),
                     ref.y.data());
  const std::vector<double> x_norms = RowNorms(x, m, k), w_norms = RowNorms(w, n, k);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      ref.magnitude[r * n + c] =
          static_cast<float>(x_norms[r] * w_norms[c] + (bias ? std::fabs((*bias)[c]) : 0.0f));
    }
  }
  return ref;
}

std::vector<float> Tolerance(const std::vector<float>& magnitude) {
  std::vector<float> allowed(magnitude.size());
  for (size_t i = 0; i < magnitude.size(); ++i) allowed[i] = kAccumulationTolerance * magnitude[i];
  return allowed;
}

class Bf16GemmTestBase : public quant::test_util::RandomTest {
 protected:
  void SetUp() override {
    FF_SKIP_WITHOUT_GPU();
    ASSERT_EQ(cudaMalloc(&workspace_, CublasLtGemm::WorkspaceBytes()), cudaSuccess);
    auto gemm = CublasLtGemm::Create(workspace_, CublasLtGemm::WorkspaceBytes());
    ASSERT_TRUE(gemm.ok()) << gemm.status();
    gemm_ = *std::move(gemm);
  }
  void TearDown() override {
    gemm_.reset();
    cudaFree(workspace_);
  }

  // Uniform values in (-half_width, half_width), never 0, from a 64-bit LCG seeded by the test
  // seed: fast enough for the LM head's 525M weights.
  std::vector<float> Uniform(int64_t count, float half_width) {
    std::vector<float> values(count);
    uint64_t state = rng_() | 1;
    for (float& v : values) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const auto bits = static_cast<int64_t>(state >> 40);  // 24 random bits
      v = (static_cast<float>(bits - (1 << 23)) + 0.5f) * (half_width / (1 << 23));
    }
    return values;
  }
  // bf16 weights like a linear layer's: rows with different magnitudes.
  std::vector<float> RandomWeights(int64_t n, int64_t k) {
    std::vector<float> w = Uniform(n * k, 0.035f);
    for (int64_t r = 0; r < n; ++r) {
      const float scale = UniformFloat(0.5f, 2.0f);
      for (int64_t c = 0; c < k; ++c) w[r * k + c] *= scale;
    }
    RoundAllToBf16(w);
    return w;
  }
  std::vector<float> RandomBf16(int64_t count, float half_width) {
    std::vector<float> values = Uniform(count, half_width);
    RoundAllToBf16(values);
    return values;
  }

  void* workspace_ = nullptr;
  std::unique_ptr<CublasLtGemm> gemm_;
};

struct GemmCase {
  int64_t m, n, k;
  bool bias;
  GemmElementType y_type;
};

std::string CaseName(const GemmCase& c) {
  return absl::StrCat("m", c.m, "_n", c.n, "_k", c.k, c.bias ? "_bias" : "",
                      c.y_type == GemmElementType::kBf16 ? "_bf16" : "_f32");
}

class Bf16GemmTest : public Bf16GemmTestBase, public ::testing::WithParamInterface<GemmCase> {};

TEST_P(Bf16GemmTest, MatchesCpuGemmOfRoundedOperands) {
  const auto [m, n, k, has_bias, y_type] = GetParam();
  const std::vector<float> x = RandomBf16(m * k, 1.0f);
  const std::vector<float> w = RandomWeights(n, k);
  const std::vector<float> bias = RandomBf16(n, 0.1f);
  const Reference ref = HostGemm(x, w, has_bias ? &bias : nullptr, m, n, k);

  DeviceBuffer<uint16_t> d_x(ToBf16Bits(x)), d_w(ToBf16Bits(w));
  DeviceBuffer<uint16_t> d_bias_bf16(ToBf16Bits(bias));
  DeviceBuffer<float> d_bias_f32(bias);
  const bool f32_out = y_type == GemmElementType::kFloat32;
  DeviceBuffer<float> d_y_f32(m * n);
  DeviceBuffer<uint16_t> d_y_bf16(m * n);
  Poison(d_y_f32, m * n);
  Poison(d_y_bf16, m * n);
  Bf16GemmArgs args{.m = m, .n = n, .k = k, .x = AsBf16(d_x), .w = AsBf16(d_w)};
  if (has_bias) {
    args.bias = f32_out ? static_cast<const void*>(d_bias_f32.get()) : d_bias_bf16.get();
    args.bias_type = y_type;
  }
  args.y = f32_out ? static_cast<void*>(d_y_f32.get()) : d_y_bf16.get();
  args.y_type = y_type;
  // The tuner (on by default) writes y while timing: poison after it, so that Run must write
  // every element itself.
  const absl::Status prepared = gemm_->Prepare(args, nullptr);
  ASSERT_TRUE(prepared.ok()) << prepared;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_GE(gemm_->tunings(), 1);
  const absl::StatusOr<std::string> chosen = gemm_->DescribeAlgorithm(args);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_THAT(*chosen, ::testing::Not(::testing::HasSubstr("not tuned yet")));
  SCOPED_TRACE(*chosen);
  Poison(d_y_f32, m * n);
  Poison(d_y_bf16, m * n);
  const absl::Status status = gemm_->Run(args, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  const std::vector<float> actual =
      f32_out ? d_y_f32.ToHost() : Bf16BitsToFloats(d_y_bf16.ToHost());
  EXPECT_TRUE(
      AllClose(ref.y, actual, Tolerance(ref.magnitude), f32_out ? 0.0 : kBf16OutputTolerance));
}

std::vector<GemmCase> GemmCases() {
  std::vector<GemmCase> cases;
  // Aligned, odd n and k (2-byte aligned rows: cuBLASLt's unaligned kernels), tiny, long k.
  const std::tuple<int64_t, int64_t> shapes[] = {{256, 512}, {999, 1001}, {7, 13}, {1000, 4096}};
  for (int64_t m : {1, 7, 16, 64, 129}) {
    for (auto [n, k] : shapes) {
      for (bool bias : {false, true}) {
        for (GemmElementType y_type : {GemmElementType::kBf16, GemmElementType::kFloat32}) {
          cases.push_back({m, n, k, bias, y_type});
        }
      }
    }
  }
  // Llama-3-8B: fused q/k/v at decode, down projection, the LM head's float32 logits.
  cases.push_back({16, 6144, 4096, false, GemmElementType::kBf16});
  cases.push_back({5, 4096, 14336, false, GemmElementType::kBf16});
  cases.push_back({3, 128256, 4096, false, GemmElementType::kFloat32});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Bf16GemmTest, ::testing::ValuesIn(GemmCases()),
                         [](const auto& info) { return CaseName(info.param); });

// Row strides on all three matrices, x starting one element in (2-byte aligned), and a bias with
// y_stride > n (cuBLASLt's epilogue once skipped the bias on some GPUs in that case; the 2-byte
// aligned x and y now send it to the fallback, which must also leave the padding alone).
TEST_F(Bf16GemmTestBase, StridedAndUnalignedOperandsMatchCpuGemm) {
  for (GemmElementType y_type : {GemmElementType::kBf16, GemmElementType::kFloat32}) {
    SCOPED_TRACE(y_type == GemmElementType::kBf16 ? "bf16 out" : "f32 out");
    const int64_t m = 9, n = 200, k = 96;
    const int64_t x_stride = 100, w_stride = 104, y_stride = 203;
    const std::vector<float> x = RandomBf16(m * k, 1.0f);
    const std::vector<float> w = RandomWeights(n, k);
    const std::vector<float> bias = RandomBf16(n, 0.5f);
    const Reference ref = HostGemm(x, w, &bias, m, n, k);

    std::vector<float> x_strided(1 + m * x_stride, 7.0f), w_strided(n * w_stride, 7.0f);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < k; ++c) x_strided[1 + r * x_stride + c] = x[r * k + c];
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c) w_strided[r * w_stride + c] = w[r * k + c];
    DeviceBuffer<uint16_t> d_x(ToBf16Bits(x_strided)), d_w(ToBf16Bits(w_strided));
    DeviceBuffer<uint16_t> d_bias_bf16(ToBf16Bits(bias));
    DeviceBuffer<float> d_bias_f32(bias);
    const bool f32_out = y_type == GemmElementType::kFloat32;
    DeviceBuffer<float> d_y_f32(m * y_stride);
    DeviceBuffer<uint16_t> d_y_bf16(m * y_stride);
    Poison(d_y_f32, m * y_stride);
    Poison(d_y_bf16, m * y_stride);
    const Bf16GemmArgs args{
        .m = m,
        .n = n,
        .k = k,
        .x = AsBf16(d_x) + 1,
        .x_stride = x_stride,
        .w = AsBf16(d_w),
        .w_stride = w_stride,
        .bias = f32_out ? static_cast<const void*>(d_bias_f32.get()) : d_bias_bf16.get(),
        .bias_type = y_type,
        .y = f32_out ? static_cast<void*>(d_y_f32.get()) : d_y_bf16.get(),
        .y_stride = y_stride,
        .y_type = y_type};
    EXPECT_FALSE(CublasLtGemm::UsesBiasEpilogue(args));
    const absl::Status status = gemm_->Run(args, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<float> padded =
        f32_out ? d_y_f32.ToHost() : Bf16BitsToFloats(d_y_bf16.ToHost());
    std::vector<float> actual(m * n);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < n; ++c) actual[r * n + c] = padded[r * y_stride + c];
      for (int64_t c = n; c < y_stride; ++c) {
        ASSERT_TRUE(std::isnan(padded[r * y_stride + c])) << "wrote past n at row " << r;
      }
    }
    EXPECT_TRUE(
        AllClose(ref.y, actual, Tolerance(ref.magnitude), f32_out ? 0.0 : kBf16OutputTolerance));
  }
}

// ---- The bias fallback (kernels/cuda/bf16_gemm.h: AddBias after the GEMM) ----------------------

struct BiasCase {
  int64_t m, n, k;
  int64_t bias_offset;  // elements: 1 misaligns the bias pointer
  GemmElementType y_type;
  bool epilogue;  // expected CublasLtGemm::UsesBiasEpilogue
};

// x w^T + bias with a bias that cancels row 0: bias[c] = -bf16(x_0 . w_c). There y = x_0 . w_c -
// bf16(x_0 . w_c) is up to half a bf16 ulp (2^-9 to 2^-8 of |x_0 . w_c|), so a bf16 output that
// rounded x w to bf16 before adding the bias would give 0 (nearly always), off by that much:
// ~2^-13 M at k = 256 (random rows: |x w| ~ M / sqrt(k)), far beyond the tolerance
// 2^-16 M + 2^-8 |y|: the double rounding that cuBLASLt's epilogue showed on unaligned operands.
// One rounding of x w + bias (float32 sum, then bf16) stays within the standard bound. Other
// rows: random signs, as in the shape tests.
class Bf16GemmBiasTest : public Bf16GemmTestBase {
 protected:
  void Check(CublasLtGemm& gemm, const BiasCase& c) {
    SCOPED_TRACE(absl::StrCat("m ", c.m, ", n ", c.n, ", k ", c.k, ", bias offset ", c.bias_offset,
                              c.y_type == GemmElementType::kBf16 ? ", bf16 out" : ", f32 out"));
    const std::vector<float> x = RandomBf16(c.m * c.k, 1.0f);
    const std::vector<float> w = RandomWeights(c.n, c.k);
    std::vector<float> bias(c.n);
    for (int64_t col = 0; col < c.n; ++col) {
      double dot = 0;
      for (int64_t i = 0; i < c.k; ++i) dot += double{x[i]} * w[col * c.k + i];
      bias[col] = -RoundToBf16(static_cast<float>(dot));
    }
    const Reference ref = HostGemm(x, w, &bias, c.m, c.n, c.k);

    std::vector<float> bias_padded(c.bias_offset + c.n, 7.0f);
    std::copy(bias.begin(), bias.end(), bias_padded.begin() + c.bias_offset);
    DeviceBuffer<uint16_t> d_x(ToBf16Bits(x)), d_w(ToBf16Bits(w));
    DeviceBuffer<uint16_t> d_bias_bf16(ToBf16Bits(bias_padded));
    DeviceBuffer<float> d_bias_f32(bias_padded);
    const bool f32_out = c.y_type == GemmElementType::kFloat32;
    DeviceBuffer<float> d_y_f32(c.m * c.n);
    DeviceBuffer<uint16_t> d_y_bf16(c.m * c.n);
    Poison(d_y_f32, c.m * c.n);
    Poison(d_y_bf16, c.m * c.n);
    const Bf16GemmArgs args{
        .m = c.m,
        .n = c.n,
        .k = c.k,
        .x = AsBf16(d_x),
        .w = AsBf16(d_w),
        .bias = f32_out ? static_cast<const void*>(d_bias_f32.get() + c.bias_offset)
                        : static_cast<const void*>(d_bias_bf16.get() + c.bias_offset),
        .bias_type = c.y_type,
        .y = f32_out ? static_cast<void*>(d_y_f32.get()) : d_y_bf16.get(),
        .y_type = c.y_type};
    EXPECT_EQ(CublasLtGemm::UsesBiasEpilogue(args), c.epilogue);
    const absl::Status status = gemm.Run(args, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    const std::vector<float> actual =
        f32_out ? d_y_f32.ToHost() : Bf16BitsToFloats(d_y_bf16.ToHost());
    EXPECT_TRUE(
        AllClose(ref.y, actual, Tolerance(ref.magnitude), f32_out ? 0.0 : kBf16OutputTolerance));
  }
};

// Odd n, a misaligned bias, both output types; the aligned cases (cuBLASLt's epilogue) are the
// control with the same cancelling bias.
TEST_F(Bf16GemmBiasTest, FallbackRoundsOnceWhereTheEpilogueIsNotTrusted) {
  constexpr GemmElementType kBf16 = GemmElementType::kBf16, kF32 = GemmElementType::kFloat32;
  const BiasCase cases[] = {{33, 999, 256, 0, kBf16, false},    {7, 13, 64, 0, kBf16, false},
                            {129, 1001, 1001, 0, kBf16, false}, {20, 512, 256, 1, kBf16, false},
                            {20, 512, 256, 0, kBf16, true},     {17, 999, 256, 0, kF32, false},
                            {9, 512, 128, 1, kF32, false},      {9, 512, 128, 0, kF32, true}};
  for (const BiasCase& c : cases) Check(*gemm_, c);
}

// A workspace too small for the whole float32 result: the fallback runs the GEMM in chunks of
// rows (here 8 rows of 1004 floats fit in half of 64 KiB: 4 full chunks and one of 5). Also: the
// repeated call runs no heuristic query, and the fallback captured into a CUDA graph and replayed
// gives the same bits as the direct call.
TEST_F(Bf16GemmBiasTest, FallbackChunksRowsThroughASmallWorkspace) {
  constexpr size_t kSmallWorkspace = 64 << 10;
  DeviceBuffer<uint8_t> small_workspace(kSmallWorkspace);
  auto small = CublasLtGemm::Create(small_workspace.get(), kSmallWorkspace);
  ASSERT_TRUE(small.ok()) << small.status();
  Check(**small, {37, 1001, 128, 0, GemmElementType::kBf16, false});

  const int64_t m = 37, n = 1001, k = 128;
  DeviceBuffer<uint16_t> d_x(ToBf16Bits(RandomBf16(m * k, 1.0f)));
  DeviceBuffer<uint16_t> d_w(ToBf16Bits(RandomWeights(n, k)));
  DeviceBuffer<uint16_t> d_bias(ToBf16Bits(RandomBf16(n, 0.1f)));
  DeviceBuffer<uint16_t> d_direct(m * n), d_graph(m * n);
  Bf16GemmArgs args{.m = m,
                    .n = n,
                    .k = k,
                    .x = AsBf16(d_x),
                    .w = AsBf16(d_w),
                    .bias = d_bias.get(),
                    .y = d_direct.get()};
  ASSERT_FALSE(CublasLtGemm::UsesBiasEpilogue(args));
  cudaStream_t stream;
  FF_CUDA_ASSERT(cudaStreamCreate(&stream));
  ASSERT_TRUE((*small)->Prepare(args).ok());
  const int64_t queries = (*small)->heuristic_queries();
  ASSERT_TRUE((*small)->Run(args, stream).ok());
  ASSERT_TRUE((*small)->Run(args, stream).ok());
  EXPECT_EQ((*small)->heuristic_queries(), queries);

  Poison(d_graph, m * n);
  args.y = d_graph.get();
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  FF_CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status captured = (*small)->Run(args, stream);
  FF_CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(captured.ok()) << captured;
  EXPECT_EQ((*small)->heuristic_queries(), queries);
  FF_CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  FF_CUDA_ASSERT(cudaGraphLaunch(exec, stream));
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_EQ(d_direct.ToHost(), d_graph.ToHost());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Without a workspace the bf16 fallback has no scratch: FailedPrecondition, not a wrong result.
// The float32 fallback (in place in y) needs none.
TEST_F(Bf16GemmBiasTest, FallbackWithoutWorkspace) {
  auto bare = CublasLtGemm::Create(nullptr, 0);
  ASSERT_TRUE(bare.ok()) << bare.status();
  Check(**bare, {5, 999, 64, 0, GemmElementType::kFloat32, false});
  DeviceBuffer<uint16_t> buffer(64 * 64), bias(64), output(64 * 64);
  const Bf16GemmArgs args{.m = 4,
                          .n = 7,
                          .k = 16,
                          .x = AsBf16(buffer),
                          .w = AsBf16(buffer),
                          .bias = bias.get(),
                          .y = output.get()};
  EXPECT_EQ((*bare)->Run(args, nullptr).code(), absl::StatusCode::kFailedPrecondition);
}

// The second call of a problem runs no heuristic query; the call captured into a CUDA graph and
// replayed gives the same bits as the direct call.
TEST_F(Bf16GemmTestBase, CachesAlgorithmsAndCapturesIntoGraphs) {
  const int64_t m = 16, n = 512, k = 1024;
  DeviceBuffer<uint16_t> d_x(ToBf16Bits(RandomBf16(m * k, 1.0f)));
  DeviceBuffer<uint16_t> d_w(ToBf16Bits(RandomWeights(n, k)));
  DeviceBuffer<uint16_t> d_bias(ToBf16Bits(RandomBf16(n, 0.1f)));
  DeviceBuffer<uint16_t> d_direct(m * n), d_graph(m * n);
  Bf16GemmArgs args{.m = m,
                    .n = n,
                    .k = k,
                    .x = AsBf16(d_x),
                    .w = AsBf16(d_w),
                    .bias = d_bias.get(),
                    .y = d_direct.get()};
  cudaStream_t stream;
  FF_CUDA_ASSERT(cudaStreamCreate(&stream));
  ASSERT_TRUE(gemm_->Prepare(args).ok());
  const int64_t queries = gemm_->heuristic_queries();  // 1, or 2 if the first filter found none
  const int64_t tunings = gemm_->tunings();
  EXPECT_GE(queries, 1);
  ASSERT_TRUE(gemm_->Run(args, stream).ok());
  ASSERT_TRUE(gemm_->Run(args, stream).ok());
  EXPECT_EQ(gemm_->heuristic_queries(), queries);
  EXPECT_EQ(gemm_->tunings(), tunings);

  Poison(d_graph, m * n);
  args.y = d_graph.get();  // same alignment class: same cached plan
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  FF_CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status captured = gemm_->Run(args, stream);
  FF_CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(captured.ok()) << captured;
  EXPECT_EQ(gemm_->heuristic_queries(), queries);
  EXPECT_EQ(gemm_->tunings(), tunings);
  FF_CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  FF_CUDA_ASSERT(cudaGraphLaunch(exec, stream));
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_EQ(d_direct.ToHost(), d_graph.ToHost());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// ---- Autotuning (CublasLtGemm::Options) --------------------------------------------------------

enum class BiasKind { kNone, kRandom, kCancellingRow0 };

// One GEMM's host operands and reference, its device buffers (y poisoned), and its arguments.
struct Problem {
  Reference ref;
  bool f32_out = false;
  int64_t outputs = 0;
  std::unique_ptr<DeviceBuffer<uint16_t>> x, w, bias_bf16, y_bf16;
  std::unique_ptr<DeviceBuffer<float>> bias_f32, y_f32;
  Bf16GemmArgs args;

  void PoisonY() {
    Poison(*y_f32, outputs);
    Poison(*y_bf16, outputs);
  }
  std::vector<float> Y() const {
    return f32_out ? y_f32->ToHost() : Bf16BitsToFloats(y_bf16->ToHost());
  }
  ::testing::AssertionResult MatchesReference() const {
    return AllClose(ref.y, Y(), Tolerance(ref.magnitude), f32_out ? 0.0 : kBf16OutputTolerance);
  }
};

class Bf16GemmAutotuneTest : public Bf16GemmTestBase {
 protected:
  std::unique_ptr<Problem> MakeProblem(int64_t m, int64_t n, int64_t k, BiasKind bias_kind,
                                       GemmElementType y_type) {
    auto p = std::make_unique<Problem>();
    const std::vector<float> x = RandomBf16(m * k, 1.0f);
    const std::vector<float> w = RandomWeights(n, k);
    std::vector<float> bias = RandomBf16(n, 0.1f);
    if (bias_kind == BiasKind::kCancellingRow0) {
      for (int64_t col = 0; col < n; ++col) {
        double dot = 0;
        for (int64_t i = 0; i < k; ++i) dot += double{x[i]} * w[col * k + i];
        bias[col] = -RoundToBf16(static_cast<float>(dot));
      }
    }
    const bool has_bias = bias_kind != BiasKind::kNone;
    p->ref = HostGemm(x, w, has_bias ? &bias : nullptr, m, n, k);
    p->f32_out = y_type == GemmElementType::kFloat32;
    p->outputs = m * n;
    p->x = std::make_unique<DeviceBuffer<uint16_t>>(ToBf16Bits(x));
    p->w = std::make_unique<DeviceBuffer<uint16_t>>(ToBf16Bits(w));
    p->bias_bf16 = std::make_unique<DeviceBuffer<uint16_t>>(ToBf16Bits(bias));
    p->bias_f32 = std::make_unique<DeviceBuffer<float>>(bias);
    p->y_bf16 = std::make_unique<DeviceBuffer<uint16_t>>(m * n);
    p->y_f32 = std::make_unique<DeviceBuffer<float>>(m * n);
    p->PoisonY();
    p->args = {.m = m, .n = n, .k = k, .x = AsBf16(*p->x), .w = AsBf16(*p->w)};
    if (has_bias) {
      p->args.bias = p->f32_out ? static_cast<const void*>(p->bias_f32->get())
                                : static_cast<const void*>(p->bias_bf16->get());
      p->args.bias_type = y_type;
    }
    p->args.y = p->f32_out ? static_cast<void*>(p->y_f32->get()) : p->y_bf16->get();
    p->args.y_type = y_type;
    return p;
  }

  std::unique_ptr<CublasLtGemm> MakeGemm(const CublasLtGemm::Options& options) {
    auto gemm = CublasLtGemm::Create(workspace_, CublasLtGemm::WorkspaceBytes(), options);
    EXPECT_TRUE(gemm.ok()) << gemm.status();
    return gemm.ok() ? *std::move(gemm) : nullptr;
  }
};

// Every candidate the tuner may choose (the heuristic's and the explicit split-K variants), on
// aligned and 2-byte aligned shapes, decode and prefill-like m, both output types, no bias, the
// epilogue's bias and the fallback's bias (odd n), and Llama-3-8B's decode shapes.
TEST_F(Bf16GemmAutotuneTest, AllCandidatesMatchCpuGemm) {
  struct Case {
    int64_t m, n, k;
    BiasKind bias;
    GemmElementType y_type;
  };
  constexpr GemmElementType kBf16 = GemmElementType::kBf16, kF32 = GemmElementType::kFloat32;
  std::vector<Case> cases;
  for (int64_t m : {1, 16, 129}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{256, 512}, {999, 1001}, {1000, 4096}}) {
      for (BiasKind bias : {BiasKind::kNone, BiasKind::kCancellingRow0}) {
        for (GemmElementType y_type : {kBf16, kF32}) cases.push_back({m, n, k, bias, y_type});
      }
    }
  }
  cases.push_back({16, 6144, 4096, BiasKind::kNone, kBf16});
  cases.push_back({1, 4096, 4096, BiasKind::kNone, kBf16});
  cases.push_back({1, 28672, 4096, BiasKind::kCancellingRow0, kBf16});  // epilogue (aligned)
  cases.push_back({5, 4096, 14336, BiasKind::kNone, kBf16});
  cases.push_back({2, 128256, 4096, BiasKind::kNone, kF32});
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("m ", c.m, ", n ", c.n, ", k ", c.k,
                              c.bias == BiasKind::kNone ? "" : ", cancelling bias",
                              c.y_type == kBf16 ? ", bf16 out" : ", f32 out"));
    std::unique_ptr<Problem> p = MakeProblem(c.m, c.n, c.k, c.bias, c.y_type);
    const absl::StatusOr<int> count = gemm_->CandidateCount(p->args);
    ASSERT_TRUE(count.ok()) << count.status();
    ASSERT_GE(*count, 1);
    for (int i = 0; i < *count; ++i) {
      const absl::StatusOr<std::string> config = gemm_->DescribeAlgorithm(p->args, i);
      ASSERT_TRUE(config.ok()) << config.status();
      SCOPED_TRACE(*config);
      p->PoisonY();
      const absl::Status status = gemm_->RunCandidate(p->args, i, nullptr);
      ASSERT_TRUE(status.ok()) << status;
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      EXPECT_TRUE(p->MatchesReference());
    }
  }
  EXPECT_EQ(gemm_->tunings(), 0);  // CandidateCount and RunCandidate never tune
}

// A problem is tuned once: repeated Prepare and Run calls (any y of the same alignment) keep the
// plan (no heuristic query, no tuning, the same description); each m is its own problem.
TEST_F(Bf16GemmAutotuneTest, TunedPlanIsReusedPerM) {
  std::unique_ptr<Problem> p = MakeProblem(1, 4096, 4096, BiasKind::kNone, GemmElementType::kBf16);
  ASSERT_TRUE(gemm_->Prepare(p->args, nullptr).ok());
  EXPECT_EQ(gemm_->tunings(), 1);
  const int64_t queries = gemm_->heuristic_queries();
  const absl::StatusOr<std::string> chosen = gemm_->DescribeAlgorithm(p->args);
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_THAT(*chosen, ::testing::Not(::testing::HasSubstr("not tuned yet")));
  SCOPED_TRACE(*chosen);

  cudaStream_t stream;
  FF_CUDA_ASSERT(cudaStreamCreate(&stream));
  DeviceBuffer<uint16_t> other_y(4096);
  for (int i = 0; i < 3; ++i) {
    p->PoisonY();
    ASSERT_TRUE(gemm_->Run(p->args, stream).ok());
    FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
    EXPECT_TRUE(p->MatchesReference());
    Bf16GemmArgs elsewhere = p->args;
    elsewhere.y = other_y.get();
    ASSERT_TRUE(gemm_->Run(elsewhere, stream).ok());
    ASSERT_TRUE(gemm_->Prepare(p->args, stream).ok());
  }
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_EQ(gemm_->tunings(), 1);
  EXPECT_EQ(gemm_->heuristic_queries(), queries);
  EXPECT_EQ(gemm_->DescribeAlgorithm(p->args).value_or(""), *chosen);

  // Another m: one more problem, tuned at its first Run; then neither retunes.
  std::unique_ptr<Problem> q = MakeProblem(2, 4096, 4096, BiasKind::kNone, GemmElementType::kBf16);
  ASSERT_TRUE(gemm_->Run(q->args, stream).ok());
  ASSERT_TRUE(gemm_->Run(q->args, stream).ok());
  ASSERT_TRUE(gemm_->Run(p->args, stream).ok());
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_EQ(gemm_->tunings(), 2);
  EXPECT_EQ(gemm_->DescribeAlgorithm(p->args).value_or(""), *chosen);
  EXPECT_THAT(gemm_->DescribeAlgorithm(q->args).value_or(""),
              ::testing::Not(::testing::HasSubstr("not tuned yet")));
  EXPECT_TRUE(q->MatchesReference());
  cudaStreamDestroy(stream);
}

// A problem first met during stream capture is not timed (no host synchronisation inside a
// capture): the graph gets the heuristic's first choice, and the first call outside capture
// tunes it. Both give correct results.
TEST_F(Bf16GemmAutotuneTest, ProblemFirstMetInCaptureIsTunedLater) {
  std::unique_ptr<Problem> p = MakeProblem(4, 512, 1024, BiasKind::kNone, GemmElementType::kBf16);
  cudaStream_t stream;
  FF_CUDA_ASSERT(cudaStreamCreate(&stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  FF_CUDA_ASSERT(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status captured = gemm_->Run(p->args, stream);
  FF_CUDA_ASSERT(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(captured.ok()) << captured;
  EXPECT_EQ(gemm_->tunings(), 0);
  const absl::StatusOr<int> count = gemm_->CandidateCount(p->args);
  ASSERT_TRUE(count.ok()) << count.status();
  if (*count > 1) {
    EXPECT_THAT(gemm_->DescribeAlgorithm(p->args).value_or(""),
                ::testing::HasSubstr("not tuned yet"));
  }
  FF_CUDA_ASSERT(cudaGraphInstantiate(&exec, graph, 0));
  FF_CUDA_ASSERT(cudaGraphLaunch(exec, stream));
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_TRUE(p->MatchesReference());

  ASSERT_TRUE(gemm_->Run(p->args, stream).ok());  // tunes (or settles a single candidate)
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_EQ(gemm_->tunings(), 1);
  EXPECT_THAT(gemm_->DescribeAlgorithm(p->args).value_or(""),
              ::testing::Not(::testing::HasSubstr("not tuned yet")));
  p->PoisonY();
  ASSERT_TRUE(gemm_->Run(p->args, stream).ok());
  FF_CUDA_ASSERT(cudaStreamSynchronize(stream));
  EXPECT_TRUE(p->MatchesReference());
  EXPECT_EQ(gemm_->tunings(), 1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// autotune = false: the heuristic's first usable candidate, deterministically (the same bits as
// candidate 0), nothing timed.
TEST_F(Bf16GemmAutotuneTest, WithoutAutotuneRunsTheHeuristicsFirstChoice) {
  std::unique_ptr<CublasLtGemm> gemm = MakeGemm({.autotune = false});
  ASSERT_NE(gemm, nullptr);
  std::unique_ptr<Problem> p = MakeProblem(16, 6144, 4096, BiasKind::kNone, GemmElementType::kBf16);
  ASSERT_TRUE(gemm->Run(p->args, nullptr).ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_TRUE(p->MatchesReference());
  const std::vector<uint16_t> chosen = p->y_bf16->ToHost();
  EXPECT_EQ(gemm->tunings(), 0);
  EXPECT_THAT(gemm->DescribeAlgorithm(p->args).value_or(""), ::testing::HasSubstr("autotune off"));
  p->PoisonY();
  ASSERT_TRUE(gemm->RunCandidate(p->args, 0, nullptr).ok());
  FF_CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_EQ(p->y_bf16->ToHost(), chosen);
}

// The tuner's budget and L2 options: a budget too small for two candidates settles on the
// heuristic's choice untimed; without the L2 flush (or with one iteration) it still tunes; the
// results stay correct either way.
TEST_F(Bf16GemmAutotuneTest, TuningOptionsKeepResultsCorrect) {
  struct Setting {
    CublasLtGemm::Options options;
    const char* expected;  // in DescribeAlgorithm, where the problem has several candidates
  };
  const Setting settings[] = {
      {{.tuning_budget_us = 1.0}, "over the tuning budget"},
      {{.timing_iterations = 1, .flush_l2 = false}, "warm L2"},
      {{.candidates = 2, .split_k_variants = false}, "tuned"},
      {{.candidates = 1, .split_k_variants = false}, "the only candidate"},
  };
  for (const Setting& setting : settings) {
    SCOPED_TRACE(setting.expected);
    std::unique_ptr<CublasLtGemm> gemm = MakeGemm(setting.options);
    ASSERT_NE(gemm, nullptr);
    std::unique_ptr<Problem> p =
        MakeProblem(1, 6144, 4096, BiasKind::kRandom, GemmElementType::kBf16);
    ASSERT_TRUE(gemm->Prepare(p->args, nullptr).ok());
    const absl::StatusOr<int> count = gemm->CandidateCount(p->args);
    ASSERT_TRUE(count.ok()) << count.status();
    const std::string chosen = gemm->DescribeAlgorithm(p->args).value_or("");
    SCOPED_TRACE(chosen);
    if (*count > 1 || setting.options.candidates == 1) {
      EXPECT_THAT(chosen, ::testing::HasSubstr(setting.expected));
    }
    EXPECT_EQ(gemm->tunings(), 1);
    p->PoisonY();
    ASSERT_TRUE(gemm->Run(p->args, nullptr).ok());
    FF_CUDA_ASSERT(cudaDeviceSynchronize());
    EXPECT_TRUE(p->MatchesReference());
  }
}

TEST_F(Bf16GemmAutotuneTest, RejectsBadOptionsNamingTheField) {
  const auto error_of = [&](const CublasLtGemm::Options& options) {
    auto gemm = CublasLtGemm::Create(workspace_, CublasLtGemm::WorkspaceBytes(), options);
    return gemm.ok() ? std::string("ok") : std::string(gemm.status().message());
  };
  EXPECT_THAT(error_of({.candidates = 0}), ::testing::HasSubstr("candidates"));
  EXPECT_THAT(error_of({.timing_iterations = 0}), ::testing::HasSubstr("timing_iterations"));
  EXPECT_THAT(error_of({.tuning_budget_us = 0}), ::testing::HasSubstr("tuning_budget_us"));
  EXPECT_EQ(error_of({}), "ok");
  DeviceBuffer<uint16_t> buffer(64);
  const Bf16GemmArgs args{
      .m = 2, .n = 8, .k = 4, .x = AsBf16(buffer), .w = AsBf16(buffer), .y = buffer.get()};
  EXPECT_EQ(gemm_->DescribeAlgorithm(args).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(gemm_->RunCandidate(args, -1, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(Bf16GemmTestBase, RejectsBadArgumentsNamingTheField) {
  DeviceBuffer<uint16_t> buffer(64 * 64), output(64 * 64);
  const __nv_bfloat16* p = AsBf16(buffer);
  const Bf16GemmArgs good{.m = 4, .n = 8, .k = 16, .x = p, .w = p, .y = output.get()};
  ASSERT_TRUE(gemm_->Run(good, nullptr).ok());
  const auto error_of = [&](Bf16GemmArgs args) {
    return std::string(gemm_->Run(args, nullptr).message());
  };
  Bf16GemmArgs args = good;
  args.k = 0;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("bad shape"));
  args = good;
  args.x = nullptr;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("x is null"));
  args = good;
  args.w = nullptr;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("w is null"));
  args = good;
  args.y = nullptr;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("y is null"));
  args = good;
  args.x_stride = 15;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("x_stride"));
  args = good;
  args.w_stride = 8;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("w_stride"));
  args = good;
  args.y_stride = 7;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("y_stride"));
  args = good;
  args.bias = p;
  args.bias_type = GemmElementType::kFloat32;
  EXPECT_THAT(error_of(args), ::testing::HasSubstr("bias_type"));
  args = good;
  args.m = 0;  // nothing to do
  EXPECT_TRUE(gemm_->Run(args, nullptr).ok());
  EXPECT_FALSE(CublasLtGemm::Create(reinterpret_cast<void*>(16), 1024).ok());  // misaligned
}

}  // namespace
}  // namespace flatfleet::cuda
