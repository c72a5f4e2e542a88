// The decode W8A8 GEMM (kernels/cuda/w8a8_decode_gemm.h) against the CPU reference
// quant::GemmW8A8 followed by the epilogue addition, and against today's two-kernel GPU path
// (GemmW8A8 into float32, then AddBias with a float32 bias). Tolerance 0 everywhere: the int32
// sums are exact and the epilogue repeats the reference's operations one rounding at a time
// (fmaf(acc, s_w, 0), times s_x, plus add, round to bf16 once), so every output must be identical
// bit for bit. Outputs are poisoned (0xFF bytes) first; the gaps of a row stride must stay so.
#include "kernels/cuda/w8a8_decode_gemm.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_gemm.h"
#include "tests/gpu/decode_gemm_test_util.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

struct DecodeCase {
  int64_t m, n, k;
};

void CheckCase(const DecodeCase& c) {
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const auto x = testing::RandomInt8PerRow(c.m, c.k, rng);
  const auto w = testing::RandomInt8PerRow(c.n, c.k, rng);
  std::vector<float> add(c.n);
  for (float& v : add) {
    v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    if (v == 0.0f) v = 0.5f;
  }
  const auto expected = quant::GemmW8A8(x, w);
  ASSERT_TRUE(expected.ok()) << expected.status();

  DeviceBuffer<int8_t> d_x(x.codes), d_w(w.codes);
  DeviceBuffer<uint16_t> d_xs(x.scales), d_ws(w.scales);
  DeviceBuffer<float> d_add(add);
  ASSERT_NE(d_w.get(), nullptr) << "out of device memory";
  DeviceBuffer<float> d_gemm(c.m * c.n);
  ASSERT_TRUE(GemmW8A8({.m = c.m,
                        .n = c.n,
                        .k = c.k,
                        .x_codes = d_x.get(),
                        .x_scales = d_xs.get(),
                        .w_codes = d_w.get(),
                        .w_scales = d_ws.get(),
                        .y = d_gemm.get()},
                       nullptr)
                  .ok());

  for (GemmElementType y_type : {GemmElementType::kFloat32, GemmElementType::kBf16}) {
    const int64_t size = y_type == GemmElementType::kBf16 ? 2 : 4;
    for (int64_t pad : {0, 5}) {
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
          EXPECT_TRUE(testing::SameBytes(want, d_two.ToHost(), size)) << "GemmW8A8 + AddBias";
        }
        for (W8A8DecodeKernel kernel : {W8A8DecodeKernel::kAuto, W8A8DecodeKernel::kSimple}) {
          SCOPED_TRACE(absl::StrCat(kernel == W8A8DecodeKernel::kSimple ? "simple" : "tensor core",
                                    size == 2 ? " bf16" : " float32", " y_stride ", y_stride,
                                    with_add ? " with add" : ""));
          DeviceBuffer<uint8_t> d_y(y_bytes);
          FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xff, y_bytes));
          const absl::Status status =
              GemmW8A8Decode({.m = c.m,
                              .n = c.n,
                              .k = c.k,
                              .x_codes = d_x.get(),
                              .x_scales = d_xs.get(),
                              .w_codes = d_w.get(),
                              .w_scales = d_ws.get(),
                              .epilogue_add = with_add ? d_add.get() : nullptr,
                              .y = d_y.get(),
                              .y_stride = y_stride,
                              .y_type = y_type,
                              .kernel = kernel},
                             nullptr);
          ASSERT_TRUE(status.ok()) << status;
          FF_CUDA_ASSERT(cudaDeviceSynchronize());
          EXPECT_TRUE(testing::SameBytes(want, d_y.ToHost(), size));
        }
      }
    }
  }
}

class W8A8DecodeGemmGpuTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(W8A8DecodeGemmGpuTest, MatchesReferenceAndTwoKernelPathBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  CheckCase(GetParam());
}

// Every m of interest; odd n; k a multiple of 16 but not of the 64-element window (16, 48, 1040:
// a short last window), and k = 64 (one window: most of the ring's prologue empty).
INSTANTIATE_TEST_SUITE_P(
    Shapes, W8A8DecodeGemmGpuTest,
    ::testing::Values(DecodeCase{1, 64, 256}, DecodeCase{1, 77, 4096}, DecodeCase{1, 8, 16},
                      DecodeCase{2, 130, 48}, DecodeCase{3, 33, 1040}, DecodeCase{7, 200, 64},
                      DecodeCase{8, 96, 2048}, DecodeCase{15, 130, 1024}, DecodeCase{16, 77, 4096},
                      DecodeCase{16, 257, 14336}, DecodeCase{5, 41, 8192}),
    [](const auto& info) {
      return absl::StrCat("m", info.param.m, "_n", info.param.n, "_k", info.param.k);
    });

// The real layers: Llama-3-8B at m = 1 and 16, Llama-3-70B at m = 1 (the CPU reference's cost).
INSTANTIATE_TEST_SUITE_P(RealShapes, W8A8DecodeGemmGpuTest,
                         ::testing::Values(DecodeCase{1, 6144, 4096}, DecodeCase{16, 6144, 4096},
                                           DecodeCase{1, 4096, 4096}, DecodeCase{16, 4096, 4096},
                                           DecodeCase{1, 28672, 4096}, DecodeCase{16, 28672, 4096},
                                           DecodeCase{1, 4096, 14336}, DecodeCase{16, 4096, 14336},
                                           DecodeCase{1, 10240, 8192}, DecodeCase{1, 8192, 8192},
                                           DecodeCase{1, 57344, 8192}, DecodeCase{1, 8192, 28672}),
                         [](const auto& info) {
                           return absl::StrCat("m", info.param.m, "_n", info.param.n, "_k",
                                               info.param.k);
                         });

// Argument checks run on the host before any launch: no GPU needed. Fake, never dereferenced,
// 16-byte aligned addresses stand in for device buffers.
template <typename T>
T* FakeDevicePointer(uintptr_t offset = 0) {
  return reinterpret_cast<T*>(uintptr_t{1} << 20 | offset);
}

DeviceW8A8DecodeGemm ValidArgs() {
  return {.m = 4,
          .n = 64,
          .k = 512,
          .x_codes = FakeDevicePointer<int8_t>(),
          .x_scales = FakeDevicePointer<uint16_t>(),
          .w_codes = FakeDevicePointer<int8_t>(),
          .w_scales = FakeDevicePointer<uint16_t>(),
          .y = FakeDevicePointer<float>()};
}

// Valid but for y (null): shape checks come first, and should one wrongly pass, the call still
// stops at the pointers instead of launching on fake addresses.
DeviceW8A8DecodeGemm ShapeArgs() {
  DeviceW8A8DecodeGemm args = ValidArgs();
  args.y = nullptr;
  return args;
}

::testing::AssertionResult FailsMentioning(const DeviceW8A8DecodeGemm& args, absl::StatusCode code,
                                           const std::string& text) {
  const absl::Status status = GemmW8A8Decode(args, nullptr);
  if (status.code() == code && std::string(status.message()).find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << status;
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(W8A8DecodeGemmArgsTest, RejectsShapesItCannotRun) {
  for (int64_t m : {0, 17}) {
    auto args = ShapeArgs();
    args.m = m;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "m must be in 1..16")) << m;
  }
  auto args = ShapeArgs();
  args.n = 0;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "n must be"));
  for (int64_t k : {0, 8, 50}) {
    args = ShapeArgs();
    args.k = k;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "k must be a positive multiple of 16")) << k;
  }
  args = ShapeArgs();
  args.k = 133152;  // 133152 * 127 * 127 > 2^31 - 1
  EXPECT_TRUE(FailsMentioning(args, absl::StatusCode::kOutOfRange, "overflow"));
  args.k = 133136;  // the largest multiple of 16 that fits: on to the pointer checks
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null"));
  args = ShapeArgs();
  args.y_stride = 10;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y_stride"));
  args = ShapeArgs();
  args.y_type = static_cast<GemmElementType>(7);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y_type"));
  args = ValidArgs();
  args.kernel = static_cast<W8A8DecodeKernel>(9);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "kernel"));
}

TEST(W8A8DecodeGemmArgsTest, RejectsNullAndMisalignedPointers) {
  auto args = ValidArgs();
  args.x_codes = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "x_codes is null"));
  args = ValidArgs();
  args.x_scales = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "x_scales is null"));
  args = ValidArgs();
  args.w_codes = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "w_codes is null"));
  args = ValidArgs();
  args.w_scales = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "w_scales is null"));
  args = ValidArgs();
  args.y = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null"));
  args = ValidArgs();
  args.x_codes = FakeDevicePointer<int8_t>(8);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "x_codes must be 16-byte aligned"));
  args = ValidArgs();
  args.w_codes = FakeDevicePointer<int8_t>(4);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "w_codes must be 16-byte aligned"));
  args = ValidArgs();
  args.y = FakeDevicePointer<uint8_t>(2);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is not aligned"));
}

}  // namespace
}  // namespace flatfleet::cuda
