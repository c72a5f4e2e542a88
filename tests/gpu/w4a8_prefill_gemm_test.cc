// The prefill W4A8 GEMM (kernels/cuda/w4a8_prefill_gemm.h) against the CPU reference
// quant::GemmW4A8 followed by the epilogue addition, and against today's two-kernel GPU path
// (GemmW4A8 into float32, then AddBias with a float32 bias). Tolerance 0 everywhere: the integer
// group sums are exact, the fold uses the reference's order and fmaf, and the epilogue is one
// float32 multiplication, one float32 addition and one round-to-nearest-even to bf16, each
// spelled out on both sides, so every output must be identical bit for bit. The simple kernel's
// int32 group sums must equal the reference's. Outputs are poisoned (0xFF bytes) first, and the
// gaps of a row stride must stay poisoned.
//
// The real layers are too big for the CPU reference on every row (4096 x 57344 x 8192 is 2e12
// multiply-adds): there every row is compared with GemmW4A8 + AddBias (itself tested bit-exact
// against the reference in int8_gemm_test.cc), and a sample of rows (tile edges, the last rows and
// random ones) with the CPU reference.
#include "kernels/cuda/w4a8_prefill_gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/quant/packed_int4_matrix.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quantized_matrix.h"
#include "kernels/cuda/bias_add.h"
#include "kernels/cuda/int8_gemm.h"
#include "tests/gpu/decode_gemm_test_util.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/ops_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

struct PrefillCase {
  int64_t m, n, k, group_size;  // group_size == k: per channel
  bool zero_points;
  bool every_row_on_cpu;  // else a sample of rows (the real shapes)
};

std::string CaseName(const PrefillCase& c) {
  return absl::StrCat("m", c.m, "_n", c.n, "_k", c.k, "_g", c.group_size,
                      c.zero_points ? "_zp" : "_sym");
}

// INT4 weights: symmetric codes in [-7, 7], or asymmetric codes and zero points in [-8, 7].
quant::QuantizedMatrix RandomInt4Weights(int64_t n, int64_t k, int64_t group_size, bool zero_points,
                                         std::mt19937_64& rng) {
  quant::QuantizedMatrix w;
  w.rows = n;
  w.cols = k;
  w.format = {.bits = 4, .symmetric = !zero_points, .group_size = group_size == k ? 0 : group_size};
  w.codes.resize(n * k);
  for (int64_t i = 0; i < n * k; i += 16) {
    uint64_t r = rng();
    for (int64_t j = i; j < i + 16 && j < n * k; ++j, r >>= 4) {
      const int nibble = static_cast<int>(r & 0xf);
      w.codes[j] = static_cast<int8_t>(zero_points ? nibble - 8 : nibble % 15 - 7);
    }
  }
  const int64_t groups = k / group_size;
  for (int64_t i = 0; i < n * groups; ++i) w.scales.push_back(testing::RandomScaleBits(rng));
  if (zero_points) {
    for (int64_t i = 0; i < n * groups; ++i) {
      w.zero_points.push_back(static_cast<int8_t>(static_cast<int>(rng() & 0xf) - 8));
    }
  }
  return w;
}

// The rows the CPU reference computes: all, or the 128-row tile edges, the last rows and a few
// random ones.
std::vector<int64_t> ReferenceRows(const PrefillCase& c, std::mt19937_64& rng) {
  std::vector<int64_t> rows;
  if (c.every_row_on_cpu) {
    for (int64_t r = 0; r < c.m; ++r) rows.push_back(r);
    return rows;
  }
  for (int64_t r : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{127}, int64_t{128},
                    c.m / 2, c.m - 2, c.m - 1}) {
    if (r >= 0 && r < c.m) rows.push_back(r);
  }
  for (int i = 0; i < 4; ++i) rows.push_back(static_cast<int64_t>(rng() % c.m));
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

// The given rows of x, as a matrix of their own.
quant::QuantizedMatrix SelectRows(const quant::QuantizedMatrix& x,
                                  const std::vector<int64_t>& rows) {
  quant::QuantizedMatrix sub;
  sub.rows = static_cast<int64_t>(rows.size());
  sub.cols = x.cols;
  sub.format = x.format;
  for (int64_t r : rows) {
    sub.codes.insert(sub.codes.end(), x.codes.begin() + r * x.cols,
                     x.codes.begin() + (r + 1) * x.cols);
    sub.scales.push_back(x.scales[r]);
  }
  return sub;
}

// Rows `rows` of an output of row stride y_stride (elements of `size` bytes), packed n apart.
std::vector<uint8_t> GatherRows(const std::vector<uint8_t>& y, const std::vector<int64_t>& rows,
                                int64_t n, int64_t y_stride, int64_t size) {
  std::vector<uint8_t> out;
  out.reserve(rows.size() * n * size);
  for (int64_t r : rows) {
    const auto begin = y.begin() + r * y_stride * size;
    out.insert(out.end(), begin, begin + n * size);
  }
  return out;
}

struct Operands {
  DeviceBuffer<int8_t> x;
  DeviceBuffer<uint16_t> x_scales, w_scales;
  DeviceBuffer<uint32_t> w;
  DeviceBuffer<int8_t> zeros;
  DeviceBuffer<float> add;
  bool unsigned_nibbles;
};

DeviceW4A8PrefillGemm PrefillArgs(const PrefillCase& c, const Operands& d, bool with_add, void* y,
                                  int64_t y_stride, GemmElementType y_type,
                                  W4A8PrefillKernel kernel) {
  return {.m = c.m,
          .n = c.n,
          .k = c.k,
          .group_size = c.group_size,
          .x_codes = d.x.get(),
          .x_scales = d.x_scales.get(),
          .w_words = d.w.get(),
          .w_unsigned_nibbles = d.unsigned_nibbles,
          .w_scales = d.w_scales.get(),
          .w_zero_points = c.zero_points ? d.zeros.get() : nullptr,
          .epilogue_add = with_add ? d.add.get() : nullptr,
          .y = y,
          .y_stride = y_stride,
          .y_type = y_type,
          .kernel = kernel};
}

const char* KernelName(W4A8PrefillKernel kernel) {
  switch (kernel) {
    case W4A8PrefillKernel::kAuto:
      return "auto";
    case W4A8PrefillKernel::kMmaSync128x128:
      return "mma.sync 128x128";
    case W4A8PrefillKernel::kSimple:
      return "simple";
    case W4A8PrefillKernel::kWgmmaExperimental:
      return "wgmma";
    case W4A8PrefillKernel::kWgmma64x128TwoPerSm:
      return "wgmma 64x128 two per SM";
    case W4A8PrefillKernel::kWgmmaWarpSpecialized:
      return "wgmma warp-specialised";
  }
  return "?";
}

// Runs `kernels` on one random problem in several output configurations; checks each output
// against the CPU reference and against GemmW4A8 + AddBias on the GPU.
void CheckCase(const PrefillCase& c, const std::vector<W4A8PrefillKernel>& kernels) {
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
  const std::vector<int64_t> rows = ReferenceRows(c, rng);
  const auto expected = quant::GemmW4A8(c.every_row_on_cpu ? x : SelectRows(x, rows), w);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto packed = quant::PackInt4Matrix(w);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const int64_t groups = c.k / c.group_size;

  Operands d{.x = DeviceBuffer<int8_t>(x.codes),
             .x_scales = DeviceBuffer<uint16_t>(x.scales),
             .w_scales = DeviceBuffer<uint16_t>(w.scales),
             .w = DeviceBuffer<uint32_t>(packed->words),
             .zeros = DeviceBuffer<int8_t>(c.zero_points ? w.zero_points : std::vector<int8_t>{0}),
             .add = DeviceBuffer<float>(add),
             .unsigned_nibbles = packed->signedness == quant::Signedness::kUnsigned};
  ASSERT_NE(d.w.get(), nullptr) << "out of device memory";

  // Today's path, once: the float32 GEMM result, then AddBias per output configuration.
  DeviceBuffer<float> d_gemm(c.m * c.n);
  ASSERT_NE(d_gemm.get(), nullptr) << "out of device memory";
  FF_CUDA_ASSERT(cudaMemset(d_gemm.get(), 0xff, c.m * c.n * 4));
  ASSERT_TRUE(GemmW4A8({.m = c.m,
                        .n = c.n,
                        .k = c.k,
                        .group_size = c.group_size,
                        .x_codes = d.x.get(),
                        .x_scales = d.x_scales.get(),
                        .w_words = d.w.get(),
                        .w_unsigned_nibbles = d.unsigned_nibbles,
                        .w_scales = d.w_scales.get(),
                        .w_zero_points = c.zero_points ? d.zeros.get() : nullptr,
                        .y = d_gemm.get()},
                       nullptr)
                  .ok());

  struct OutputConfig {
    GemmElementType y_type;
    int64_t pad;
    bool with_add;
  };
  std::vector<OutputConfig> configs;
  if (c.every_row_on_cpu) {
    for (GemmElementType y_type : {GemmElementType::kFloat32, GemmElementType::kBf16})
      for (int64_t pad : {0, 3})
        for (bool with_add : {false, true}) configs.push_back({y_type, pad, with_add});
  } else {  // the engine's configuration, and the plain float32 result
    configs = {{GemmElementType::kBf16, 0, true}, {GemmElementType::kFloat32, 0, false}};
  }
  for (const OutputConfig& config : configs) {
    const int64_t size = config.y_type == GemmElementType::kBf16 ? 2 : 4;
    const int64_t y_stride = c.n + config.pad;
    const int64_t y_bytes = ((c.m - 1) * y_stride + c.n) * size;
    const std::vector<uint8_t> want_rows =
        testing::ExpectedBytes(expected->output, config.with_add ? add.data() : nullptr,
                               static_cast<int64_t>(rows.size()), c.n, c.n, config.y_type);
    // Every row of today's two-kernel path (or, without the addition in float32, its GEMM alone).
    std::vector<uint8_t> two_kernel;
    if (config.with_add) {
      DeviceBuffer<uint8_t> d_two(y_bytes);
      FF_CUDA_ASSERT(cudaMemset(d_two.get(), 0xff, y_bytes));
      ASSERT_TRUE(AddBias({.rows = c.m,
                           .cols = c.n,
                           .x = d_gemm.get(),
                           .bias = d.add.get(),
                           .bias_type = GemmElementType::kFloat32,
                           .y = d_two.get(),
                           .y_stride = y_stride,
                           .y_type = config.y_type},
                          nullptr)
                      .ok());
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      two_kernel = d_two.ToHost();
    } else if (config.y_type == GemmElementType::kFloat32 && config.pad == 0) {
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      const std::vector<float> gemm = d_gemm.ToHost();
      two_kernel.resize(gemm.size() * 4);
      std::memcpy(two_kernel.data(), gemm.data(), two_kernel.size());
    }
    if (!two_kernel.empty()) {  // today's path agrees with the reference on the reference's rows
      EXPECT_TRUE(
          testing::SameBytes(want_rows, GatherRows(two_kernel, rows, c.n, y_stride, size), size))
          << "GemmW4A8 + AddBias";
    }
    for (W4A8PrefillKernel kernel : kernels) {
      SCOPED_TRACE(absl::StrCat(KernelName(kernel),
                                config.y_type == GemmElementType::kBf16 ? " bf16" : " float32",
                                " y_stride ", y_stride, config.with_add ? " with add" : ""));
      DeviceBuffer<uint8_t> d_y(y_bytes);
      ASSERT_NE(d_y.get(), nullptr) << "out of device memory";
      FF_CUDA_ASSERT(cudaMemset(d_y.get(), 0xff, y_bytes));
      DeviceW4A8PrefillGemm args =
          PrefillArgs(c, d, config.with_add, d_y.get(), y_stride, config.y_type, kernel);
      DeviceBuffer<int32_t> d_acc(kernel == W4A8PrefillKernel::kSimple ? c.m * c.n * groups : 1);
      if (kernel == W4A8PrefillKernel::kSimple) {
        FF_CUDA_ASSERT(cudaMemset(d_acc.get(), 0xff, c.m * c.n * groups * 4));
        args.group_accumulators = d_acc.get();
      }
      const absl::Status status = GemmW4A8Prefill(args, nullptr);
      ASSERT_TRUE(status.ok()) << status;
      FF_CUDA_ASSERT(cudaDeviceSynchronize());
      const std::vector<uint8_t> got = d_y.ToHost();
      if (c.every_row_on_cpu) {  // all rows, and the stride gaps still poisoned
        EXPECT_TRUE(testing::SameBytes(
            testing::ExpectedBytes(expected->output, config.with_add ? add.data() : nullptr, c.m,
                                   c.n, y_stride, config.y_type),
            got, size))
            << "against the CPU reference";
      } else {
        EXPECT_TRUE(testing::SameBytes(want_rows, GatherRows(got, rows, c.n, y_stride, size), size))
            << "against the CPU reference on " << rows.size() << " rows";
      }
      if (!two_kernel.empty()) {
        EXPECT_TRUE(testing::SameBytes(two_kernel, got, size)) << "against GemmW4A8 + AddBias";
      }
      if (kernel == W4A8PrefillKernel::kSimple) {
        EXPECT_TRUE(testing::BitwiseEqual(expected->group_accumulators, d_acc.ToHost()))
            << "int32 group sums";
      }
    }
  }
}

class W4A8PrefillGemmGpuTest : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(W4A8PrefillGemmGpuTest, MatchesReferenceAndTwoKernelPathBitExactly) {
  FF_SKIP_WITHOUT_GPU();
  std::vector<W4A8PrefillKernel> kernels = {W4A8PrefillKernel::kAuto,
                                            W4A8PrefillKernel::kMmaSync128x128};
  if (GetParam().every_row_on_cpu) kernels.push_back(W4A8PrefillKernel::kSimple);
  CheckCase(GetParam(), kernels);
}

// The wgmma kernels (kWgmmaExperimental is kAuto's choice on Hopper where it applies, so the
// suite above also runs it through kAuto), each on its own test so a filter can pick one: the
// same checks, on the problems they accept (k and groups multiples of 128). Hopper only.
class W4A8PrefillWgmmaGpuTest : public ::testing::TestWithParam<PrefillCase> {
 protected:
  void Check(W4A8PrefillKernel kernel) {
    FF_SKIP_WITHOUT_GPU();
    int device = 0, major = 0;
    FF_CUDA_ASSERT(cudaGetDevice(&device));
    FF_CUDA_ASSERT(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major != 9) GTEST_SKIP() << "wgmma needs a Hopper GPU (sm_90a)";
    CheckCase(GetParam(), {kernel});
  }
};

TEST_P(W4A8PrefillWgmmaGpuTest, MatchesReferenceAndTwoKernelPathBitExactly) {
  Check(W4A8PrefillKernel::kWgmmaExperimental);
}

TEST_P(W4A8PrefillWgmmaGpuTest, TwoPerSmMatchesReferenceBitExactly) {
  Check(W4A8PrefillKernel::kWgmma64x128TwoPerSm);
}

TEST_P(W4A8PrefillWgmmaGpuTest, WarpSpecializedMatchesReferenceBitExactly) {
  Check(W4A8PrefillKernel::kWgmmaWarpSpecialized);
}

// Tails in every dimension: m around the 128-row tile and the 8-tile rasterisation groups (64,
// 65, 127, 300, 4096 + 17 = 33 tile rows: five groups, the last of one row; and below the
// engine's 64 rows: 1, 17, 33); n not a multiple of 128 (nor of 8 or 2: odd n takes the scalar
// stores); k shorter than one 128-wide K tile (32, 96) or ending in a short one (160, 288, 416);
// groups of 32, 64, 96, 128, 256, 384, 640 and per channel, with and without zero points. Group
// sums that may reach 2^22 (per channel over 4096 with zero points, 8192 without) take the
// conversion-unit path, the others the exact magic-number conversion; 2176 with zero points is
// the largest group of the latter (2176 * 127 * 15 < 2^22).
INSTANTIATE_TEST_SUITE_P(
    Tails, W4A8PrefillGemmGpuTest,
    ::testing::Values(
        PrefillCase{64, 128, 256, 128, false, true}, PrefillCase{65, 130, 512, 128, true, true},
        PrefillCase{127, 77, 160, 32, false, true}, PrefillCase{128, 256, 1024, 64, true, true},
        PrefillCase{300, 200, 288, 96, true, true}, PrefillCase{4113, 72, 256, 128, false, true},
        PrefillCase{4113, 131, 128, 32, true, true}, PrefillCase{1, 64, 128, 128, true, true},
        PrefillCase{17, 136, 384, 384, false, true}, PrefillCase{33, 257, 640, 640, true, true},
        PrefillCase{96, 130, 2048, 128, false, true}, PrefillCase{200, 384, 4096, 4096, true, true},
        PrefillCase{257, 131, 96, 32, true, true}, PrefillCase{129, 256, 1280, 640, false, true},
        PrefillCase{512, 520, 2048, 256, true, true}, PrefillCase{70, 1000, 416, 32, false, true},
        PrefillCase{1030, 1030, 32, 32, false, true}, PrefillCase{96, 130, 8192, 8192, false, true},
        PrefillCase{100, 80, 4352, 2176, true, true}),
    [](const auto& info) { return CaseName(info.param); });

// The real layers (group 128) at m = 256 and 4096: Llama-3-8B (= Mixtral-8x7B experts, whose
// gate|up and down are the same 28672 x 4096 and 4096 x 14336) fused q/k/v, o, fused gate|up,
// down; Llama-3-70B's.
INSTANTIATE_TEST_SUITE_P(RealShapes, W4A8PrefillGemmGpuTest,
                         ::testing::Values(PrefillCase{256, 6144, 4096, 128, false, false},
                                           PrefillCase{4096, 6144, 4096, 128, true, false},
                                           PrefillCase{256, 4096, 4096, 128, true, false},
                                           PrefillCase{4096, 4096, 4096, 128, false, false},
                                           PrefillCase{256, 28672, 4096, 128, false, false},
                                           PrefillCase{4096, 28672, 4096, 128, true, false},
                                           PrefillCase{256, 4096, 14336, 128, true, false},
                                           PrefillCase{4096, 4096, 14336, 128, false, false},
                                           PrefillCase{256, 10240, 8192, 128, true, false},
                                           PrefillCase{4096, 10240, 8192, 128, false, false},
                                           PrefillCase{256, 8192, 8192, 128, false, false},
                                           PrefillCase{4096, 8192, 8192, 128, true, false},
                                           PrefillCase{256, 57344, 8192, 128, true, false},
                                           PrefillCase{4096, 57344, 8192, 128, false, false},
                                           PrefillCase{256, 8192, 28672, 128, false, false},
                                           PrefillCase{4096, 8192, 28672, 128, true, false}),
                         [](const auto& info) { return CaseName(info.param); });

// Tails in m and n (k and groups stay multiples of 128), groups of 128, 256 and 640, zero points,
// and the real layers at m = 256 and 4096.
INSTANTIATE_TEST_SUITE_P(Tails, W4A8PrefillWgmmaGpuTest,
                         ::testing::Values(PrefillCase{64, 128, 256, 128, false, true},
                                           PrefillCase{65, 130, 512, 128, true, true},
                                           PrefillCase{1, 64, 128, 128, true, true},
                                           PrefillCase{17, 136, 384, 128, false, true},
                                           PrefillCase{96, 130, 2048, 128, false, true},
                                           PrefillCase{4113, 72, 256, 128, false, true},
                                           PrefillCase{129, 256, 1280, 640, false, true},
                                           PrefillCase{300, 200, 1024, 256, true, true},
                                           PrefillCase{512, 520, 2048, 256, true, true},
                                           PrefillCase{70, 1000, 512, 128, false, true}),
                         [](const auto& info) { return CaseName(info.param); });

INSTANTIATE_TEST_SUITE_P(RealShapes, W4A8PrefillWgmmaGpuTest,
                         ::testing::Values(PrefillCase{256, 6144, 4096, 128, false, false},
                                           PrefillCase{4096, 6144, 4096, 128, true, false},
                                           PrefillCase{4096, 4096, 4096, 128, false, false},
                                           PrefillCase{4096, 28672, 4096, 128, true, false},
                                           PrefillCase{4096, 4096, 14336, 128, false, false},
                                           PrefillCase{4096, 10240, 8192, 128, false, false},
                                           PrefillCase{4096, 8192, 8192, 128, true, false},
                                           PrefillCase{4096, 57344, 8192, 128, false, false},
                                           PrefillCase{4096, 8192, 28672, 128, true, false}),
                         [](const auto& info) { return CaseName(info.param); });

// Argument checks run on the host before any launch: no GPU needed. Fake, never dereferenced,
// 16-byte aligned addresses stand in for device buffers.
template <typename T>
T* FakeDevicePointer(uintptr_t offset = 0) {
  return reinterpret_cast<T*>(uintptr_t{1} << 20 | offset);
}

DeviceW4A8PrefillGemm ValidArgs() {
  return {.m = 300,
          .n = 64,
          .k = 512,
          .group_size = 128,
          .x_codes = FakeDevicePointer<int8_t>(),
          .x_scales = FakeDevicePointer<uint16_t>(),
          .w_words = FakeDevicePointer<uint32_t>(),
          .w_scales = FakeDevicePointer<uint16_t>(),
          .y = FakeDevicePointer<float>()};
}

::testing::AssertionResult FailsMentioning(const DeviceW4A8PrefillGemm& args, absl::StatusCode code,
                                           const std::string& text) {
  const absl::Status status = GemmW4A8Prefill(args, nullptr);
  if (status.code() == code && std::string(status.message()).find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << status;
}

// Valid but for y (null): the shape checks come first, and should one wrongly pass, the call
// still stops at the pointers instead of launching on fake addresses.
DeviceW4A8PrefillGemm ShapeArgs() {
  DeviceW4A8PrefillGemm args = ValidArgs();
  args.y = nullptr;
  return args;
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(W4A8PrefillGemmArgsTest, RejectsShapesItCannotRun) {
  for (int64_t m : {int64_t{0}, int64_t{-1}, int64_t{1} << 31}) {
    auto args = ShapeArgs();
    args.m = m;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "m must be in")) << m;
  }
  auto args = ShapeArgs();
  args.n = 0;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "n must be"));
  for (int64_t k : {0, 48, 496}) {
    args = ShapeArgs();
    args.k = k;
    args.group_size = 32;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "k must be a positive multiple of 32")) << k;
  }
  for (int64_t group_size : {0, 48, 96, 1024}) {  // 96 and 1024 do not divide 512
    args = ShapeArgs();
    args.group_size = group_size;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "group_size")) << group_size;
  }
  args = ShapeArgs();
  args.k = 2415648;  // 2415648 * 127 * 7 > 2^31 - 1 (2415616 would fit)
  args.group_size = 32;
  EXPECT_TRUE(FailsMentioning(args, absl::StatusCode::kOutOfRange, "overflow"));
  args.k = 1127360;  // fine symmetric, but 1127360 * 127 * 15 > 2^31 - 1 with zero points
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null"));
  args.w_zero_points = FakeDevicePointer<int8_t>();
  EXPECT_TRUE(FailsMentioning(args, absl::StatusCode::kOutOfRange, "overflow"));
  args = ShapeArgs();
  args.m = args.n = (int64_t{1} << 31) - 1;  // 2^48 tiles: more blocks than one launch takes
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "exceeds one launch"));
  args = ShapeArgs();
  args.y_stride = 63;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y_stride"));
  args = ShapeArgs();
  args.y_type = static_cast<GemmElementType>(7);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y_type"));
  args = ValidArgs();
  args.kernel = static_cast<W4A8PrefillKernel>(9);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "kernel"));
  args = ValidArgs();
  args.group_accumulators = FakeDevicePointer<int32_t>();
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "simple kernel only"));
  // The wgmma kernels' limits: whole 128-wide K tiles in one group, group sums below 2^22.
  for (W4A8PrefillKernel kernel :
       {W4A8PrefillKernel::kWgmmaExperimental, W4A8PrefillKernel::kWgmma64x128TwoPerSm,
        W4A8PrefillKernel::kWgmmaWarpSpecialized}) {
    for (auto [k, group_size, zero_points] :
         {std::tuple<int64_t, int64_t, bool>{544, 32, false},  // k and groups not multiples of 128
          {512, 64, false},                                    // groups not a multiple of 128
          {4608, 2304, true},      // 2304 * 127 * 15 >= 2^22 (fine without zero points)
          {9472, 4736, false}}) {  // 4736 * 127 * 7 >= 2^22
      args = ShapeArgs();
      args.kernel = kernel;
      args.k = k;
      args.group_size = group_size;
      if (zero_points) args.w_zero_points = FakeDevicePointer<int8_t>();
      EXPECT_TRUE(FailsMentioning(args, kInvalid, "wgmma kernel needs"))
          << KernelName(kernel) << " " << k << " " << group_size;
    }
    args = ShapeArgs();  // accepted: the call goes on to the pointers
    args.kernel = kernel;
    args.k = 4608;
    args.group_size = 2304;
    EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is null")) << KernelName(kernel);
  }
}

TEST(W4A8PrefillGemmArgsTest, RejectsNullAndMisalignedPointers) {
  auto args = ValidArgs();
  args.x_codes = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "x_codes is null"));
  args = ValidArgs();
  args.x_scales = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "x_scales is null"));
  args = ValidArgs();
  args.w_words = nullptr;
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "w_words is null"));
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
  args.w_words = FakeDevicePointer<uint32_t>(4);
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "w_words must be 16-byte aligned"));
  args = ValidArgs();
  args.y = FakeDevicePointer<uint8_t>(2);  // 2-byte aligned: fine for bf16, not for float32
  EXPECT_TRUE(FailsMentioning(args, kInvalid, "y is not aligned"));
}

}  // namespace
}  // namespace flatfleet::cuda
