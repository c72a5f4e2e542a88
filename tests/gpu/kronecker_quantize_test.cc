// FlatQuant's transform fused with the quantizer on the TF32 tensor cores
// (kernels/cuda/kronecker_quantize.h) against the exact CPU transform
// (FlatQuantInputTransform::ApplyToActivations) and the CPU quantizer's rules. Tolerances are the
// header's stated bound b = KroneckerQuantizeBound per element (E |P1|^T |U| |P2| + 2^-24 |y|):
//   * the scale is fp16_up(clip * m / qmax) for some m within max_b of the CPU's max|y|;
//   * each code is clamp(rne(v / s), +-qmax) for some v in [y - b, y + b] with the GPU's scale s;
//   * the bound is tight enough to mean something: fewer than 10% of the elements have an
//     interval wide enough to admit two codes (the rest are checked exactly).
// Then every path (a cluster of 2-8 CTAs per row, blocks of 1, 2 or 4 rows; P2 from L2 or staged
// in shared memory, from a 16-byte aligned pointer or not) against one block per row reading P2
// from L2: the same codes and scales, bit for bit, as the header states.
#include "kernels/cuda/kronecker_quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/kronecker_transform.h"  // KroneckerLeftFactor
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/flat_quant_input_transform.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/transform_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::DeviceBuffer;

struct FusedCase {
  int64_t size;
  int64_t rows;
  int qmax;
  float clip;
};

// fp16_up(clip * m / qmax) with the kernel's float operations, as ordered FP16 bits.
int ScaleBits(double m, float clip, int qmax) {
  const float exact = (static_cast<float>(m) * clip) / static_cast<float>(qmax);
  if (!(exact > 0.0f)) return 0x3c00;
  auto bits = quant::ScaleToHalfRoundingUp(exact);
  return bits.ok() ? *bits : 0x7c00;
}

class KroneckerQuantizeTest : public ::testing::TestWithParam<FusedCase> {};

TEST_P(KroneckerQuantizeTest, CodesAndScalesWithinTheStatedBoundOfTheExactTransform) {
  FF_SKIP_WITHOUT_GPU();
  const FusedCase c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const int64_t n = c.size;
  const auto [n1, n2, scales, p1, p2] = testing::RandomFlatQuantFactors(n, rng);
  ASSERT_TRUE(KroneckerQuantizeSupports(n1, n2)) << n1 << " x " << n2;
  auto transform = quant::FlatQuantInputTransform::Create(scales, n1, p1, n2, p2, c.clip, 1.0f);
  ASSERT_TRUE(transform.ok()) << transform.status();

  const std::vector<float> raw = testing::RandomActivations(c.rows, n, rng);
  const int64_t x_stride = n + 6, codes_stride = n + 32;
  const testing::StridedBf16Rows bf16 = testing::MakeStridedBf16Rows(raw, c.rows, n, x_stride);
  const std::vector<uint16_t>& x_bits = bf16.bits;
  const std::vector<float>& inputs = bf16.values;
  std::vector<float> exact(c.rows * n);
  (*transform)->ApplyToActivations(inputs, c.rows, exact);

  DeviceBuffer<uint16_t> d_x(x_bits);
  DeviceBuffer<float> d_scales(scales), d_p1(p1), d_p2(p2);
  DeviceBuffer<int8_t> d_codes(std::vector<int8_t>(c.rows * codes_stride, 0x5a));  // poisoned
  DeviceBuffer<uint16_t> d_code_scales(std::vector<uint16_t>(c.rows, 0xffff));
  DeviceKroneckerQuantize args;
  args.x = d_x.get();
  args.rows = c.rows;
  args.x_stride = x_stride;
  args.n1 = n1;
  args.n2 = n2;
  args.divisors = d_scales.get();
  args.p1 = d_p1.get();
  args.p2 = d_p2.get();
  args.clip_ratio = c.clip;
  args.qmax = c.qmax;
  args.codes = d_codes.get();
  args.codes_stride = codes_stride;
  args.scales = d_code_scales.get();
  const absl::Status launched = ApplyKroneckerQuantize(args, nullptr);
  ASSERT_TRUE(launched.ok()) << launched;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<int8_t> codes = d_codes.ToHost();
  const std::vector<uint16_t> got_scales = d_code_scales.ToHost();

  int64_t moved = 0, ambiguous = 0;
  std::vector<double> left_abs(n), bound(n);
  for (int64_t r = 0; r < c.rows; ++r) {
    // |P1|^T |U| |P2| for this row, U = x / s (the CPU's float division).
    std::vector<double> u(n);
    for (int64_t i = 0; i < n; ++i) u[i] = std::fabs(double{inputs[r * n + i] / scales[i]});
    for (int64_t a = 0; a < n1; ++a) {
      for (int64_t j = 0; j < n2; ++j) {
        double sum = 0.0;
        for (int64_t i = 0; i < n1; ++i) sum += std::fabs(double{p1[i * n1 + a]}) * u[i * n2 + j];
        left_abs[a * n2 + j] = sum;
      }
    }
    double max_exact = 0.0, max_bound = 0.0;
    for (int64_t a = 0; a < n1; ++a) {
      for (int64_t b = 0; b < n2; ++b) {
        double sum = 0.0;
        for (int64_t j = 0; j < n2; ++j)
          sum += left_abs[a * n2 + j] * std::fabs(double{p2[j * n2 + b]});
        const int64_t e = a * n2 + b;
        bound[e] = KroneckerQuantizeBound(n1, n2, sum, exact[r * n + e]);
        max_exact = std::max(max_exact, std::fabs(double{exact[r * n + e]}));
        max_bound = std::max(max_bound, bound[e]);
      }
    }
    const int low = ScaleBits(std::max(0.0, max_exact - max_bound), c.clip, c.qmax);
    const int high = ScaleBits(max_exact + max_bound, c.clip, c.qmax);
    ASSERT_GE(got_scales[r], low) << "row " << r;
    ASSERT_LE(got_scales[r], high) << "row " << r;
    const double s = HalfToFloat(got_scales[r]);
    for (int64_t e = 0; e < n; ++e) {
      const double y = exact[r * n + e];
      const double lo_q = (y - bound[e]) / s - 1e-6, hi_q = (y + bound[e]) / s + 1e-6;
      const int lo = std::clamp(static_cast<int>(std::ceil(lo_q - 0.5)), -c.qmax, c.qmax);
      const int hi = std::clamp(static_cast<int>(std::floor(hi_q + 0.5)), -c.qmax, c.qmax);
      const int code = codes[r * codes_stride + e];
      ASSERT_GE(code, lo) << "row " << r << " element " << e << ": y " << y << ", bound "
                          << bound[e] << ", scale " << s;
      ASSERT_LE(code, hi) << "row " << r << " element " << e << ": y " << y << ", bound "
                          << bound[e] << ", scale " << s;
      ambiguous += hi > lo;
      const int exact_code = std::clamp(
          static_cast<int>(std::nearbyint(static_cast<float>(y) / static_cast<float>(s))), -c.qmax,
          c.qmax);
      moved += code != exact_code;
    }
    for (int64_t e = n; e < codes_stride; ++e) {
      ASSERT_EQ(codes[r * codes_stride + e], 0) << "row " << r << " pad " << e;
    }
  }
  EXPECT_LT(ambiguous, c.rows * n / 10) << "the bound is too loose to check anything";
  std::printf(
      "n %lld (%lld x %lld), %lld rows, qmax %d: %lld of %lld codes admit two values "
      "under the bound, %lld off the exact transform's\n",
      static_cast<long long>(n), static_cast<long long>(n1), static_cast<long long>(n2),
      static_cast<long long>(c.rows), c.qmax, static_cast<long long>(ambiguous),
      static_cast<long long>(c.rows * n), static_cast<long long>(moved));
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, KroneckerQuantizeTest,
    ::testing::Values(
        // llama-tiny's 256 = 16 x 16, 1024 = 32 x 32; Llama-3 4096 = 64 x 64, 8192 = 64 x 128,
        // 14336 = 112 x 128 (7 tiles of 16 rows: two warps idle), 28672 = 128 x 224.
        // 4-bit codes (FlatQuant's w4a4; TF32 is too coarse for exact 8-bit codes) and 3-bit.
        FusedCase{256, 5, 7, 0.87f}, FusedCase{1024, 3, 7, 1.0f}, FusedCase{4096, 4, 7, 0.9f},
        FusedCase{8192, 3, 7, 1.0f}, FusedCase{14336, 2, 7, 0.8f}, FusedCase{28672, 2, 7, 0.95f},
        FusedCase{8192, 2, 3, 0.9f},
        // Decode's extremes on the split path: one row over 8 CTAs, 16 rows over 4 CTAs each.
        FusedCase{28672, 1, 7, 0.9f}, FusedCase{4096, 16, 7, 1.0f},
        // Enough rows to fill the GPU with blocks of 4 (64-wide factors) and 2 (112 x 128) token
        // rows, each with a partial last block (fewer rows run on the split path, as above).
        FusedCase{8192, 530, 7, 0.9f}, FusedCase{4096, 531, 7, 1.0f},
        FusedCase{14336, 265, 7, 0.9f}),
    [](const ::testing::TestParamInfo<FusedCase>& info) {
      return absl::StrCat("n", info.param.size, "_rows", info.param.rows, "_qmax", info.param.qmax);
    });

TEST(KroneckerQuantizeArgsTest, NonFiniteRowsAndBadArguments) {
  FF_SKIP_WITHOUT_GPU();
  const int64_t n1 = 16, n2 = 16, n = 256;
  std::vector<float> identity(n1 * n1, 0.0f);
  for (int i = 0; i < 16; ++i) identity[i * 17] = 1.0f;
  std::vector<uint16_t> x(2 * n, FloatToBF16(0.5f));
  x[n + 7] = 0x7fc0;  // NaN in the second row
  DeviceBuffer<uint16_t> d_x(x);
  DeviceBuffer<float> d_ones(std::vector<float>(n, 1.0f)), d_p(identity);
  DeviceBuffer<int8_t> d_codes(std::vector<int8_t>(2 * n, 0x5a));
  DeviceBuffer<uint16_t> d_scales(std::vector<uint16_t>(2, 0));
  DeviceKroneckerQuantize args;
  args.x = d_x.get();
  args.rows = 2;
  args.n1 = n1;
  args.n2 = n2;
  args.divisors = d_ones.get();
  args.p1 = d_p.get();
  args.p2 = d_p.get();
  args.codes = d_codes.get();
  args.scales = d_scales.get();
  ASSERT_TRUE(ApplyKroneckerQuantize(args, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<int8_t> codes = d_codes.ToHost();
  const std::vector<uint16_t> scales = d_scales.ToHost();
  // Row 0: identity factors, every t = 0.5: s = fp16_up(0.5 / 7), every code 7.
  EXPECT_EQ(scales[0], *quant::ScaleToHalfRoundingUp(0.5f / 7.0f));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(codes[i], 7) << i;
  // Row 1: the quantizer's non-finite rule, scale +inf and zero codes.
  EXPECT_EQ(scales[1], 0x7c00);
  for (int64_t i = n; i < 2 * n; ++i) ASSERT_EQ(codes[i], 0) << i;

  DeviceKroneckerQuantize bad = args;
  bad.n1 = 8;  // 8 x 32: not a multiple of 16 rows (the exact path takes it)
  bad.n2 = 32;
  EXPECT_EQ(ApplyKroneckerQuantize(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.codes_stride = 257;  // odd
  EXPECT_EQ(ApplyKroneckerQuantize(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.qmax = 0;
  EXPECT_EQ(ApplyKroneckerQuantize(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.scales = nullptr;
  EXPECT_EQ(ApplyKroneckerQuantize(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

struct PathCase {
  int64_t size;
  int64_t rows;
};

class KroneckerQuantizePathTest : public ::testing::TestWithParam<PathCase> {};

// The reference is one block per row (the unsplit kernel); every other path, bf16 and float32 rows
// alike, must give its codes and scales bit for bit, each run into freshly poisoned outputs. The
// reference itself must have overwritten every poisoned byte (codes within +-qmax, zero padding,
// finite scales), so equal outputs are written outputs.
TEST_P(KroneckerQuantizePathTest, EveryPathGivesTheUnsplitCodesAndScalesBitForBit) {
  FF_SKIP_WITHOUT_GPU();
  const PathCase c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const int64_t n = c.size;
  const auto [n1, n2, scales, p1, p2] = testing::RandomFlatQuantFactors(n, rng);
  ASSERT_TRUE(KroneckerQuantizeSupports(n1, n2)) << n1 << " x " << n2;
  const std::vector<float> raw = testing::RandomActivations(c.rows, n, rng);
  const int64_t x_stride = n + 6, codes_stride = n + 32;
  const testing::StridedBf16Rows bf16 = testing::MakeStridedBf16Rows(raw, c.rows, n, x_stride);
  std::vector<float> f32(c.rows * x_stride, 1.0f);
  for (int64_t r = 0; r < c.rows; ++r) {
    std::copy(raw.begin() + r * n, raw.begin() + (r + 1) * n, f32.begin() + r * x_stride);
  }
  DeviceBuffer<uint16_t> d_bf16(bf16.bits);
  DeviceBuffer<float> d_f32(f32), d_scales(scales), d_p1(p1), d_p2(p2);
  std::vector<float> shifted_p2(p2.size() + 1, 0.0f);  // P2 from 4 bytes past an aligned start
  std::copy(p2.begin(), p2.end(), shifted_p2.begin() + 1);
  DeviceBuffer<float> d_shifted_p2(shifted_p2);
  DeviceBuffer<int8_t> d_codes(c.rows * codes_stride);
  DeviceBuffer<uint16_t> d_code_scales(c.rows);
  const int qmax = 7;
  struct Outputs {
    std::vector<int8_t> codes;
    std::vector<uint16_t> scales;
  };
  const auto run = [&](ActivationType type, const internal::KroneckerQuantizeOptions& options,
                       bool misaligned_p2, Outputs& out) {
    ASSERT_EQ(cudaMemset(d_codes.get(), 0x5a, c.rows * codes_stride), cudaSuccess);  // poisoned
    ASSERT_EQ(cudaMemset(d_code_scales.get(), 0xff, c.rows * 2), cudaSuccess);
    DeviceKroneckerQuantize args;
    args.x = type == ActivationType::kBfloat16 ? static_cast<const void*>(d_bf16.get())
                                               : static_cast<const void*>(d_f32.get());
    args.type = type;
    args.rows = c.rows;
    args.x_stride = x_stride;
    args.n1 = n1;
    args.n2 = n2;
    args.divisors = d_scales.get();
    args.p1 = d_p1.get();
    args.p2 = misaligned_p2 ? d_shifted_p2.get() + 1 : d_p2.get();
    args.clip_ratio = 0.9f;
    args.qmax = qmax;
    args.codes = d_codes.get();
    args.codes_stride = codes_stride;
    args.scales = d_code_scales.get();
    const absl::Status launched = internal::ApplyKroneckerQuantizeWith(args, options, nullptr);
    ASSERT_TRUE(launched.ok()) << launched;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    out.codes = d_codes.ToHost();
    out.scales = d_code_scales.ToHost();
  };

  // The paths: every cluster size, every block of rows that fits and the rules' own choice, each
  // with P2 staged where it fits and from L2.
  std::vector<internal::KroneckerQuantizeOptions> paths;
  for (bool p2_from_l2 : {false, true}) {
    for (int cluster = 2; cluster <= std::min<int64_t>(8, n1 / 16); ++cluster) {
      paths.push_back({.cluster = cluster, .p2_from_l2 = p2_from_l2});
    }
    for (int rows_per_block : {1, 2, 4}) {
      if (internal::KroneckerQuantizeRowsFit(n1, n2, rows_per_block)) {
        paths.push_back({.cluster = 1, .rows_per_block = rows_per_block, .p2_from_l2 = p2_from_l2});
      }
    }
    paths.push_back({.p2_from_l2 = p2_from_l2});
  }
  for (ActivationType type : {ActivationType::kBfloat16, ActivationType::kFloat32}) {
    SCOPED_TRACE(type == ActivationType::kBfloat16 ? "bf16 rows" : "float32 rows");
    Outputs reference;
    ASSERT_NO_FATAL_FAILURE(
        run(type, {.cluster = 1, .rows_per_block = 1, .p2_from_l2 = true}, false, reference));
    for (int64_t r = 0; r < c.rows; ++r) {
      ASSERT_LT(reference.scales[r], 0x7c00) << "row " << r;
      for (int64_t e = 0; e < codes_stride; ++e) {
        const int code = reference.codes[r * codes_stride + e];
        if (e < n) {
          ASSERT_LE(std::abs(code), qmax) << "row " << r << " element " << e;
        } else {
          ASSERT_EQ(code, 0) << "row " << r << " pad " << e;
        }
      }
    }
    for (const internal::KroneckerQuantizeOptions& path : paths) {
      for (bool misaligned_p2 : {false, true}) {
        // Staged P2 from a pointer off 16 bytes takes the 4-byte copies.
        if (misaligned_p2 && path.p2_from_l2) continue;
        SCOPED_TRACE(absl::StrCat("cluster ", path.cluster, ", rows per block ",
                                  path.rows_per_block, path.p2_from_l2 ? ", P2 from L2" : "",
                                  misaligned_p2 ? ", P2 off 16 bytes" : ""));
        Outputs got;
        ASSERT_NO_FATAL_FAILURE(run(type, path, misaligned_p2, got));
        EXPECT_TRUE(testing::BitwiseEqual(reference.codes, got.codes));
        EXPECT_TRUE(testing::BitwiseEqual(reference.scales, got.scales));
      }
    }
  }
}

// 4096 = 64 x 64 and 8192 = 64 x 128 (4 row tiles: 2-4 CTAs; P2 staged beside P1), 14336 =
// 112 x 128 (7: uneven splits over 2-6 CTAs; blocks of 2 rows stage P2 over P1), 28672 = 128 x 224
// (8: 2-8 CTAs; P2 staged over P1 in 2 chunks, from L2 on the split), at decode's row counts;
// llama-tiny's 1024.
std::vector<PathCase> PathCases() {
  std::vector<PathCase> cases;
  for (int64_t size : {4096, 8192, 14336, 28672}) {
    for (int64_t rows : {1, 2, 3, 5, 16}) cases.push_back({size, rows});
  }
  cases.push_back({1024, 3});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(LlamaWidths, KroneckerQuantizePathTest, ::testing::ValuesIn(PathCases()),
                         [](const ::testing::TestParamInfo<PathCase>& info) {
                           return absl::StrCat("n", info.param.size, "_rows", info.param.rows);
                         });

TEST(KroneckerQuantizeArgsTest, BadPathOptions) {
  FF_SKIP_WITHOUT_GPU();
  DeviceBuffer<uint16_t> d_x(std::vector<uint16_t>(4096, 0));
  DeviceBuffer<float> d_f(std::vector<float>(4096, 1.0f));
  DeviceBuffer<int8_t> d_codes(4096);
  DeviceBuffer<uint16_t> d_scales(1);
  DeviceKroneckerQuantize args;
  args.x = d_x.get();
  args.rows = 1;
  args.n1 = 64;
  args.n2 = 64;
  args.divisors = d_f.get();
  args.p1 = d_f.get();
  args.p2 = d_f.get();
  args.codes = d_codes.get();
  args.scales = d_scales.get();
  for (const internal::KroneckerQuantizeOptions& bad :
       std::vector<internal::KroneckerQuantizeOptions>{
           {.cluster = 5},  // more CTAs than the 4 row tiles
           {.cluster = 9},
           {.cluster = -1},
           {.cluster = 2, .rows_per_block = 2},  // blocks of rows: with cluster 1 only
           {.rows_per_block = 2},
           {.cluster = 1, .rows_per_block = 3}}) {
    EXPECT_EQ(internal::ApplyKroneckerQuantizeWith(args, bad, nullptr).code(),
              absl::StatusCode::kInvalidArgument)
        << bad.cluster << " " << bad.rows_per_block;
  }
  args.n1 = 128;  // 128 x 224: one row per block only (16 tiles a warp)
  args.n2 = 224;
  EXPECT_EQ(internal::ApplyKroneckerQuantizeWith(args, {.cluster = 1, .rows_per_block = 2}, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(KroneckerQuantizeArgsTest, SupportsEveryLlamaWidth) {
  for (auto [n1, n2] : {std::pair<int64_t, int64_t>{64, 64}, {64, 128}, {112, 128}, {128, 224}}) {
    EXPECT_TRUE(KroneckerQuantizeSupports(n1, n2)) << n1 << " x " << n2;
  }
  EXPECT_FALSE(KroneckerQuantizeSupports(8, 8));    // stories260K's 64: the exact path
  EXPECT_FALSE(KroneckerQuantizeSupports(4, 43));   // 172
  EXPECT_FALSE(KroneckerQuantizeSupports(16, 43));  // 688
}

// Where P2 goes at the Llama widths (KroneckerQuantizeSharedLayout): staged beside P1 for 4096 and
// 8192 in blocks of 4 rows and on the split paths, over P1 for 14336 in blocks of 2 (one chunk) and
// 28672 (two chunks of 14 k-steps); from L2 on 28672's split; every layout within the opt-in.
TEST(KroneckerQuantizeArgsTest, SharedLayoutAtLlamaWidths) {
  using internal::KroneckerP2Source;
  using internal::KroneckerQuantizeSharedLayout;
  struct Expected {
    int64_t n1, n2, rows, cluster;
    KroneckerP2Source source;
    int64_t chunk_steps;
  };
  for (const Expected& e : std::vector<Expected>{{64, 64, 4, 1, KroneckerP2Source::kBesideP1, 8},
                                                 {64, 128, 4, 1, KroneckerP2Source::kBesideP1, 16},
                                                 {112, 128, 2, 1, KroneckerP2Source::kOverP1, 16},
                                                 {128, 224, 1, 1, KroneckerP2Source::kOverP1, 14},
                                                 {64, 128, 1, 4, KroneckerP2Source::kBesideP1, 16},
                                                 {112, 128, 1, 7, KroneckerP2Source::kBesideP1, 16},
                                                 {128, 224, 1, 8, KroneckerP2Source::kL2, 0}}) {
    const internal::KroneckerQuantizeLayout layout =
        KroneckerQuantizeSharedLayout(e.n1, e.n2, e.rows, e.cluster, /*stage_p2=*/true);
    SCOPED_TRACE(absl::StrCat(e.n1, " x ", e.n2, ", ", e.rows, " rows, cluster ", e.cluster));
    EXPECT_EQ(layout.p2_source, e.source);
    EXPECT_EQ(layout.p2_chunk_steps, e.chunk_steps);
    EXPECT_LE(layout.bytes, internal::kKroneckerQuantizeMaxSharedBytes);
    EXPECT_EQ(KroneckerQuantizeSharedLayout(e.n1, e.n2, e.rows, e.cluster, false).p2_source,
              KroneckerP2Source::kL2);
  }
  // P2's padded rows put a fragment's rows t at banks 8 t apart.
  for (int64_t n2 = 8; n2 <= 512; n2 += 8) EXPECT_EQ(internal::KroneckerQuantizeP2Ld(n2) % 32, 8);
}

// The split rule on a 132-SM H200: up to 8 CTAs a row, one per 16-row tile, while rows x CTAs
// fit the SMs; the fewest CTAs for the busiest one's tiles; none from 67 rows on.
TEST(KroneckerQuantizeArgsTest, ClusterSizeRule) {
  using internal::KroneckerQuantizeClusterSize;
  EXPECT_EQ(KroneckerQuantizeClusterSize(64, 1, 132), 4);
  EXPECT_EQ(KroneckerQuantizeClusterSize(64, 33, 132), 4);
  EXPECT_EQ(KroneckerQuantizeClusterSize(64, 34, 132), 2);
  EXPECT_EQ(KroneckerQuantizeClusterSize(64, 67, 132), 1);
  EXPECT_EQ(KroneckerQuantizeClusterSize(112, 18, 132), 7);
  EXPECT_EQ(KroneckerQuantizeClusterSize(112, 19, 132), 4);  // 6 allowed: 4 CTAs of 2 tiles
  EXPECT_EQ(KroneckerQuantizeClusterSize(128, 16, 132), 8);
  EXPECT_EQ(KroneckerQuantizeClusterSize(128, 17, 132), 4);
  EXPECT_EQ(KroneckerQuantizeClusterSize(128, 1, 132, 7), 4);  // capped at 7: 4 of 2 tiles
  EXPECT_EQ(KroneckerQuantizeClusterSize(16, 1, 132), 1);      // one row tile: nothing to split
  for (int64_t n1 : {32, 48, 64, 80, 96, 112, 128}) {
    for (int64_t rows = 1; rows <= 80; ++rows) {
      const int cluster = KroneckerQuantizeClusterSize(n1, rows, 132);
      EXPECT_GE(cluster, 1);
      EXPECT_LE(cluster, std::min<int64_t>(8, n1 / 16));
      if (cluster > 1) {
        EXPECT_LE(rows * cluster, 132) << n1 << " " << rows;
      }
    }
  }
}

}  // namespace
}  // namespace flatfleet::cuda
