// The recipes' activation side on the GPU (kernels/cuda/int8_activation_quantizer.h and
// quant/stored_layer_on_device.h) against the CPU reference:
//   * the quantizer alone: low-bit per-token codes (W4A4's qmax 7 and the other widths), a static
//     per-tensor scale, SmoothQuant's x / s and FlattenQuant's channel split, each against the
//     CPU transform (quant/smooth_input_transform.h, quant/flatten_input_transform.h) followed by
//     QuantizeRtn / QuantizeWithStaticScale on the same bf16-exact inputs. Codes, the zero tail up
//     to the padded K and the FP16 scales must be identical (tolerance 0: every step is an IEEE
//     float32 operation the kernel performs in the CPU's order); outputs are poisoned first.
//   * a stored layer of each recipe (and of the Hadamard rotation at power-of-two widths)
//     prepared by PrepareStoredLayerOnDevice and run by the CUDA backend's Linear at decode and
//     prefill row counts (every GEMM path): the float32 output must equal
//     QuantizedLinear::Forward's bit for bit and the bf16 output must be it rounded once (codes,
//     integer sums and the epilogue are each exact, as in cuda_quantized_linear_test.cc; Integer
//     Scale layers: the int32 fold and the CPU's float epilogue order, integer_scale_epilogue.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/integer_scale.h"
#include "kernels/cpu/quant/kronecker_transform.h"  // KroneckerLeftFactor
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "kernels/cuda/backend/cuda_quantized_linear.h"
#include "kernels/cuda/int8_activation_quantizer.h"
#include "quant/flat_quant_input_transform.h"
#include "quant/flatten_input_transform.h"
#include "quant/hadamard_input_transform.h"
#include "quant/input_transform.h"
#include "quant/quantized_linear.h"
#include "quant/smooth_input_transform.h"
#include "quant/stored_layer_on_device.h"
#include "tests/gpu/gpu_test_random.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/int8_quant_test_util.h"
#include "tests/gpu/transform_test_util.h"

namespace flatfleet::cuda {
namespace {

using testing::BitwiseEqual;
using testing::DeviceBuffer;

// kHadamard: the randomized Hadamard rotation (hadamard_transform.h), stored layers only.
enum class Prologue { kNone, kSmooth, kFlatten, kHadamard, kFlatQuant };

struct RecipeCase {
  int64_t rows, cols;
  int bits;
  bool static_scale;
  Prologue prologue;
  float clip_ratio;
};

int64_t RoundUp32(int64_t value) { return (value + 31) / 32 * 32; }

// Smoothing scales over four orders of magnitude (SmoothingScales clamps to [1e-5, 1e5]).
std::vector<float> RandomSmoothScales(int64_t cols, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> log_scale(-2.0f, 2.0f);
  std::vector<float> scales(cols);
  for (float& s : scales) s = std::pow(10.0f, log_scale(rng));
  return scales;
}

// Mostly unsplit channels, a few split 2..5 ways (the recipe splits the outlier channels).
std::vector<int32_t> RandomSplits(int64_t cols, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> pick(0, 15), ways(2, 5);
  std::vector<int32_t> splits(cols, 1);
  for (int32_t& s : splits) {
    if (pick(rng) == 0) s = ways(rng);
  }
  return splits;
}

// The CPU transform of `prologue` (or none) on [rows, in] with its GPU gather / divisors.
struct Transform {
  quant::InputTransformChain chain;
  std::vector<int32_t> sources;  // empty: identity
  std::vector<float> divisors;   // empty: none
};

Transform MakeTransform(Prologue prologue, int64_t in, std::mt19937_64& rng) {
  Transform t;
  if (prologue == Prologue::kSmooth) {
    auto smooth = quant::SmoothInputTransform::Create(RandomSmoothScales(in, rng), 0.5);
    EXPECT_TRUE(smooth.ok()) << smooth.status();
    t.divisors = (*smooth)->scales();
    auto chain = quant::InputTransformChain::Create({*smooth});
    EXPECT_TRUE(chain.ok()) << chain.status();
    t.chain = *std::move(chain);
  } else if (prologue == Prologue::kHadamard) {
    auto rotation = quant::HadamardInputTransform::Create(in, rng());
    EXPECT_TRUE(rotation.ok()) << rotation.status();
    auto chain = quant::InputTransformChain::Create({*rotation});
    EXPECT_TRUE(chain.ok()) << chain.status();
    t.chain = *std::move(chain);
  } else if (prologue == Prologue::kFlatQuant) {
    // A trained-looking transform: smoothing around 1, factors near the identity.
    const int64_t n1 = quant::KroneckerLeftFactor(in), n2 = in / n1;
    auto flat = quant::FlatQuantInputTransform::Create(
        testing::RandomFlatQuantScales(in, rng), n1, testing::RandomNearIdentityFactor(n1, rng), n2,
        testing::RandomNearIdentityFactor(n2, rng), 0.9f, 1.0f);
    EXPECT_TRUE(flat.ok()) << flat.status();
    auto chain = quant::InputTransformChain::Create({*flat});
    EXPECT_TRUE(chain.ok()) << chain.status();
    t.chain = *std::move(chain);
  } else if (prologue == Prologue::kFlatten) {
    const std::vector<int32_t> splits = RandomSplits(in, rng);
    auto flatten = quant::FlattenInputTransform::Create(splits);
    EXPECT_TRUE(flatten.ok()) << flatten.status();
    // The documented column order: inputs in place, then each split input's extra copies.
    for (int64_t j = 0; j < in; ++j) t.sources.push_back(static_cast<int32_t>(j));
    for (int64_t j = 0; j < in; ++j) {
      for (int32_t copy = 1; copy < splits[j]; ++copy) t.sources.push_back(static_cast<int32_t>(j));
    }
    for (int32_t j : t.sources) t.divisors.push_back(static_cast<float>(splits[j]));
    auto chain = quant::InputTransformChain::Create({*flatten});
    EXPECT_TRUE(chain.ok()) << chain.status();
    t.chain = *std::move(chain);
  }
  return t;
}

// bf16 activations and their exact float32 values.
struct Activations {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};

Activations RandomBf16Activations(int64_t rows, int64_t cols, std::mt19937_64& rng) {
  std::mt19937 narrow(static_cast<uint32_t>(rng()));
  const std::vector<float> raw = testing::RandomActivations(rows, cols, narrow);
  Activations a;
  a.bits.resize(raw.size());
  a.values.resize(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    a.bits[i] = FloatToBF16(raw[i]);
    a.values[i] = BF16ToFloat(a.bits[i]);
  }
  return a;
}

// A static scale that saturates the largest values (calibrated on 0.8 of the observed range, as a
// calibration set that missed the extremes would be).
uint16_t SaturatingStaticScale(const std::vector<float>& t, int bits) {
  float max_abs = 0.0f;
  for (float v : t) max_abs = std::max(max_abs, std::fabs(v));
  auto scale =
      quant::ScaleToHalfRoundingUp(0.8f * max_abs / static_cast<float>((1 << (bits - 1)) - 1));
  EXPECT_TRUE(scale.ok()) << scale.status();
  return scale.value_or(0x3c00);
}

class ActivationQuantizerRecipesTest : public ::testing::TestWithParam<RecipeCase> {};

TEST_P(ActivationQuantizerRecipesTest, CodesAndScalesMatchTheCpuBitForBit) {
  FF_SKIP_WITHOUT_GPU();
  const RecipeCase c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const Transform transform = MakeTransform(c.prologue, c.cols, rng);
  const Activations x = RandomBf16Activations(c.rows, c.cols, rng);
  ASSERT_FALSE(HasFailure());
  const std::vector<float> t = transform.chain.ApplyToActivations(x.values, c.rows);
  const int64_t k = transform.chain.OutFeatures(c.cols);
  ASSERT_EQ(static_cast<int64_t>(t.size()), c.rows * k);

  const uint16_t static_scale = c.static_scale ? SaturatingStaticScale(t, c.bits) : 0;
  const auto expected =
      c.static_scale
          ? quant::QuantizeWithStaticScale(t, c.rows, k, c.bits, static_scale)
          : quant::QuantizeRtn(t, c.rows, k,
                               {.bits = c.bits, .symmetric = true, .clip_ratio = c.clip_ratio});
  ASSERT_TRUE(expected.ok()) << expected.status();

  const int64_t codes_stride = RoundUp32(k);
  DeviceBuffer<uint16_t> d_x(x.bits);
  DeviceBuffer<int8_t> d_codes(std::vector<int8_t>(c.rows * codes_stride, 0x5a));  // poisoned
  DeviceBuffer<uint16_t> d_scales(std::vector<uint16_t>(c.rows, 0xffff));          // NaN bits
  DeviceBuffer<int32_t> d_status(std::vector<int32_t>{0});
  DeviceBuffer<int32_t> d_sources(transform.sources.empty() ? std::vector<int32_t>{0}
                                                            : transform.sources);
  DeviceBuffer<float> d_divisors(transform.divisors.empty() ? std::vector<float>{1.0f}
                                                            : transform.divisors);
  DeviceActivationQuantization args;
  args.x = d_x.get();
  args.type = ActivationType::kBfloat16;
  args.rows = c.rows;
  args.cols = k;
  args.clip_ratio = c.clip_ratio;
  args.codes = d_codes.get();
  args.codes_stride = codes_stride;
  args.scales = d_scales.get();
  args.status = d_status.get();
  args.qmax = (1 << (c.bits - 1)) - 1;
  args.static_scale = static_scale;
  if (!transform.sources.empty()) {
    args.channel_sources = d_sources.get();
    args.x_cols = c.cols;
    args.x_stride = c.cols;
  }
  if (!transform.divisors.empty()) args.channel_divisors = d_divisors.get();
  const absl::Status launched = QuantizeActivationsInt8(args, nullptr);
  ASSERT_TRUE(launched.ok()) << launched;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  const std::vector<int8_t> codes = d_codes.ToHost();
  std::vector<int8_t> want(c.rows * codes_stride, 0);  // zeros past K
  for (int64_t r = 0; r < c.rows; ++r) {
    std::copy_n(expected->codes.data() + r * k, k, want.data() + r * codes_stride);
  }
  EXPECT_EQ(d_status.ToHost()[0], 0);
  EXPECT_TRUE(BitwiseEqual(expected->scales, d_scales.ToHost()));
  EXPECT_TRUE(BitwiseEqual(want, codes));
  // The codes stay within the format (a W4A4 code is one of -7..7).
  const int qmax = (1 << (c.bits - 1)) - 1;
  for (int8_t code : codes) ASSERT_LE(std::abs(static_cast<int>(code)), qmax);
}

std::string PrologueName(Prologue p) {
  return p == Prologue::kSmooth      ? "_smooth"
         : p == Prologue::kFlatten   ? "_flatten"
         : p == Prologue::kHadamard  ? "_hadamard"
         : p == Prologue::kFlatQuant ? "_flatquant"
                                     : "";
}

INSTANTIATE_TEST_SUITE_P(
    Recipes, ActivationQuantizerRecipesTest,
    ::testing::Values(
        // W4A4 (qmax 7) per token: tails, clipping, the real widths (8B hidden and down_proj's
        // input, 70B down_proj's input).
        RecipeCase{1, 64, 4, false, Prologue::kNone, 1.0f},
        RecipeCase{33, 1000, 4, false, Prologue::kNone, 1.0f},
        RecipeCase{5, 333, 4, false, Prologue::kNone, 0.9f},
        RecipeCase{16, 4096, 4, false, Prologue::kNone, 1.0f},
        RecipeCase{4, 14336, 4, false, Prologue::kNone, 1.0f},
        RecipeCase{2, 28672, 4, false, Prologue::kNone, 1.0f},
        // Other widths the CPU allows: 2 (qmax 1), 3, 6 bits.
        RecipeCase{7, 256, 2, false, Prologue::kNone, 1.0f},
        RecipeCase{9, 172, 3, false, Prologue::kNone, 1.0f},
        RecipeCase{3, 688, 6, false, Prologue::kNone, 0.85f},
        // Static per-tensor scales (w8a8-static, the flatten recipes' A4 / A8), saturating.
        RecipeCase{17, 256, 8, true, Prologue::kNone, 1.0f},
        RecipeCase{6, 4096, 8, true, Prologue::kNone, 1.0f},
        RecipeCase{11, 172, 4, true, Prologue::kNone, 1.0f},
        // SmoothQuant's x / s, per token (w8a8-smooth, w4a8-smooth) and static
        // (w8a8-smooth-static).
        RecipeCase{8, 64, 8, false, Prologue::kSmooth, 1.0f},
        RecipeCase{13, 4096, 8, false, Prologue::kSmooth, 1.0f},
        RecipeCase{3, 14336, 8, false, Prologue::kSmooth, 1.0f},
        RecipeCase{5, 688, 8, true, Prologue::kSmooth, 1.0f},
        // FlattenQuant's split channels with the static scale (w4a4-flatten, w8a8-flatten), and
        // per token.
        RecipeCase{7, 256, 4, true, Prologue::kFlatten, 1.0f},
        RecipeCase{4, 4096, 8, true, Prologue::kFlatten, 1.0f},
        RecipeCase{19, 172, 4, false, Prologue::kFlatten, 1.0f}),
    [](const ::testing::TestParamInfo<RecipeCase>& info) {
      const RecipeCase& c = info.param;
      return absl::StrCat("A", c.bits, "_m", c.rows, "_k", c.cols, c.static_scale ? "_static" : "",
                          PrologueName(c.prologue), c.clip_ratio < 1.0f ? "_clipped" : "");
    });

TEST(ActivationQuantizerRecipesTest, RefusesBadRecipeArguments) {
  FF_SKIP_WITHOUT_GPU();
  DeviceBuffer<uint16_t> d_x(std::vector<uint16_t>(64, 0));
  DeviceBuffer<int8_t> d_codes(64);
  DeviceBuffer<uint16_t> d_scales(1);
  DeviceActivationQuantization args;
  args.x = d_x.get();
  args.type = ActivationType::kBfloat16;
  args.rows = 1;
  args.cols = 64;
  args.codes = d_codes.get();
  args.scales = d_scales.get();
  args.qmax = 128;
  EXPECT_EQ(QuantizeActivationsInt8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.qmax = 7;
  args.static_scale = 0x7c00;  // +inf
  EXPECT_EQ(QuantizeActivationsInt8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.static_scale = 0;
  DeviceBuffer<int32_t> d_sources(std::vector<int32_t>(64, 0));
  args.channel_sources = d_sources.get();  // without x_cols
  EXPECT_EQ(QuantizeActivationsInt8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.x_cols = 32;
  args.x_stride = 16;  // narrower than x_cols
  EXPECT_EQ(QuantizeActivationsInt8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.x_stride = 32;
  EXPECT_TRUE(QuantizeActivationsInt8(args, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// ---- Stored layers of each recipe through the loader and the CUDA backend.

struct StoredCase {
  int64_t m, out, in;
  int weight_bits;
  int64_t group_size;  // of the transformed K (0: per channel)
  int activation_bits;
  bool static_scale;
  Prologue prologue;
  bool integer_scales = false;  // Integer Scale's multipliers (w4a8-intscale)
  bool symmetric = true;        // of the weight (false: zero points)
  bool balanced = false;        // ABQ's odd levels (2/3-bit weights run as INT4 operands)
};

class StoredRecipeLayerTest : public ::testing::TestWithParam<StoredCase> {};

TEST_P(StoredRecipeLayerTest, LinearEqualsTheCpuForwardBitForBit) {
  FF_SKIP_WITHOUT_GPU();
  const StoredCase c = GetParam();
  const uint64_t seed = testing::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  Transform transform = MakeTransform(c.prologue, c.in, rng);
  const int64_t k = transform.chain.OutFeatures(c.in);
  const Activations x = RandomBf16Activations(c.m, c.in, rng);
  ASSERT_FALSE(HasFailure());

  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::vector<float> w(c.out * k);
  for (float& v : w) v = u(rng);
  quant::QuantizedLinearParts parts;
  parts.in_features = c.in;
  parts.activation_format = {.bits = c.activation_bits, .symmetric = true, .group_size = 0};
  // FlatQuant's layers quantize with their learned activation clip.
  if (c.prologue == Prologue::kFlatQuant) parts.activation_format.clip_ratio = 0.9f;
  auto weight = quant::QuantizeRtn(w, c.out, k,
                                   {.bits = c.weight_bits,
                                    .symmetric = c.symmetric,
                                    .group_size = c.group_size,
                                    .balanced = c.balanced});
  ASSERT_TRUE(weight.ok()) << weight.status();
  if (c.integer_scales) {
    auto scaled = quant::MakeIntegerScaledWeight(*weight, parts.activation_format);
    ASSERT_TRUE(scaled.ok()) << scaled.status();
    parts.gemm_kind = quant::LinearGemmKind::kIntegerScales;
    parts.integer_scaled = *std::move(scaled);
  } else {
    parts.weight = *std::move(weight);
  }
  parts.bias.resize(c.out);
  for (float& b : parts.bias) b = 10.0f * u(rng);
  if (c.static_scale) {
    parts.static_activation_scale =
        SaturatingStaticScale(transform.chain.ApplyToActivations(x.values, c.m), c.activation_bits);
  }
  parts.transforms = transform.chain;
  auto layer = quant::QuantizedLinear::FromParts(std::move(parts));
  ASSERT_TRUE(layer.ok()) << layer.status();
  std::vector<float> expected(c.m * c.out);
  ASSERT_TRUE(layer->Forward(x.values, c.m, expected).ok());

  auto backend = kernels::cuda_backend::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  const std::string name = "model.layers.0.mlp.down_proj";
  ASSERT_TRUE(quant::CheckRunsOnDevice(name, *layer).ok());
  auto prepared = quant::PrepareStoredLayerOnDevice(name, *layer, **backend);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  // FlatQuant's fused tensor-core transform is within a bound (kronecker_quantize_test.cc); the
  // exact path is what equals the CPU bit for bit.
  auto* cuda_weight =
      dynamic_cast<kernels::cuda_backend::CudaQuantizedLinearWeight*>(prepared->get());
  ASSERT_NE(cuda_weight, nullptr);
  cuda_weight->kronecker_fused = false;
  EXPECT_EQ((*prepared)->in_features(), c.in);
  auto context = (*backend)->CreateContext();
  ASSERT_TRUE(context.ok()) << context.status();
  ASSERT_TRUE((*context)->ReserveWorkspace((*backend)->LinearScratchBytes(**prepared, c.m)).ok());

  DeviceBuffer<uint16_t> d_x(x.bits);
  DeviceBuffer<float> d_y(std::vector<float>(c.m * c.out, std::nanf("")));  // poisoned
  runtime::ConstTensorView xv(d_x.get(), runtime::ScalarType::kBFloat16,
                              runtime::MemoryKind::kDevice, c.m, c.in);
  runtime::TensorView yv(d_y.get(), runtime::ScalarType::kFloat32, runtime::MemoryKind::kDevice,
                         c.m, c.out);
  const absl::Status ran = (*backend)->Linear(**context, **prepared, xv, yv);
  ASSERT_TRUE(ran.ok()) << ran;
  // The bf16 output: the reference rounded once (RNE).
  DeviceBuffer<uint16_t> d_y16(std::vector<uint16_t>(c.m * c.out, 0xffff));  // NaN bits
  runtime::TensorView y16(d_y16.get(), runtime::ScalarType::kBFloat16, runtime::MemoryKind::kDevice,
                          c.m, c.out);
  const absl::Status ran16 = (*backend)->Linear(**context, **prepared, xv, y16);
  ASSERT_TRUE(ran16.ok()) << ran16;
  ASSERT_TRUE((*context)->Synchronize().ok());
  EXPECT_TRUE(BitwiseEqual(expected, d_y.ToHost()));
  std::vector<uint16_t> expected16(expected.size());
  for (size_t i = 0; i < expected.size(); ++i) expected16[i] = FloatToBF16(expected[i]);
  EXPECT_TRUE(BitwiseEqual(expected16, d_y16.ToHost()));
}

INSTANTIATE_TEST_SUITE_P(
    Recipes, StoredRecipeLayerTest,
    ::testing::Values(
        // w4a4: 4-bit per-channel weights x INT4 per token, at decode (the streaming / split-K
        // kernels), the mma.sync rows and prefill (the 128 x 128 W4A8 kernel); padded K 172.
        StoredCase{1, 256, 256, 4, 0, 4, false, Prologue::kNone},
        StoredCase{24, 130, 172, 4, 0, 4, false, Prologue::kNone},
        StoredCase{70, 256, 512, 4, 0, 4, false, Prologue::kNone},
        // w8a8-static (the W8A8 mma.sync kernel and, above 256 rows, cuBLASLt's IMMA sums).
        StoredCase{5, 96, 256, 8, 0, 8, true, Prologue::kNone},
        StoredCase{300, 256, 688, 8, 0, 8, true, Prologue::kNone},
        // w8a8-smooth, w8a8-smooth-static, w4a8-smooth (groups of 128).
        StoredCase{9, 128, 256, 8, 0, 8, false, Prologue::kSmooth},
        StoredCase{3, 64, 688, 8, 0, 8, true, Prologue::kSmooth},
        StoredCase{2, 512, 1024, 4, 128, 8, false, Prologue::kSmooth},
        StoredCase{80, 256, 512, 4, 128, 8, false, Prologue::kSmooth},
        // w4a4-flatten and w8a8-flatten: K grows past the layer's inputs (per-channel weights).
        StoredCase{4, 64, 256, 4, 0, 4, true, Prologue::kFlatten},
        StoredCase{33, 96, 172, 8, 0, 8, true, Prologue::kFlatten},
        // w4a4-hadamard and w8a8-hadamard-gptq's rotation at power-of-two widths, where the
        // rotation is bit-exact (hadamard_transform_test.cc covers the blocked sizes): decode,
        // the W4A8 prefill kernel, W8A8 on cuBLASLt.
        StoredCase{3, 128, 256, 4, 0, 4, false, Prologue::kHadamard},
        StoredCase{70, 256, 256, 4, 0, 4, false, Prologue::kHadamard},
        StoredCase{5, 512, 4096, 8, 0, 8, false, Prologue::kHadamard},
        StoredCase{300, 64, 256, 8, 0, 8, false, Prologue::kHadamard},
        // w4a8-intscale: GemmW4A8's group sums folded with the integer multipliers
        // (integer_scale_epilogue.h) at decode and prefill row counts, groups of 128 and 32,
        // zero points, and 70 rows of 2048 x 8192 in groups of 32, which run as 3 chunks of the
        // 64 MiB group-sum scratch (32 rows each).
        StoredCase{1, 256, 512, 4, 128, 8, false, Prologue::kNone, true},
        StoredCase{24, 130, 256, 4, 32, 8, false, Prologue::kNone, true},
        StoredCase{70, 256, 1024, 4, 128, 8, false, Prologue::kNone, true, false},
        StoredCase{70, 2048, 8192, 4, 32, 8, false, Prologue::kNone, true},
        // ... with the Hadamard rotation and 4-bit activations in front.
        StoredCase{5, 128, 256, 4, 128, 4, false, Prologue::kHadamard, true},
        // w4a4-flatquant: FlatQuant's Kronecker transform (kronecker_transform.h, bit-exact) on
        // 4-bit per-channel weights, at decode, the mma.sync rows and prefill; 172 = 4 x 43
        // (stories260K's down_proj, padded K), 4096 = 64 x 64.
        StoredCase{1, 128, 256, 4, 0, 4, false, Prologue::kFlatQuant},
        StoredCase{24, 130, 172, 4, 0, 4, false, Prologue::kFlatQuant},
        StoredCase{70, 256, 4096, 4, 0, 4, false, Prologue::kFlatQuant},
        StoredCase{300, 64, 256, 4, 0, 4, false, Prologue::kFlatQuant},
        // w3a8 / w2a8 (asymmetric groups of 128) and ABQ's balanced codes (w3a8-abq, w2a8-bal):
        // INT4 operands of the W4A8 GEMMs (int4_operand_widening.h) at decode (the fragment
        // GEMM's groups of 128), the wgmma rows and prefill.
        StoredCase{1, 256, 512, 3, 128, 8, false, Prologue::kNone, false, false},
        StoredCase{40, 256, 1024, 2, 128, 8, false, Prologue::kNone, false, false},
        StoredCase{300, 128, 512, 3, 128, 8, false, Prologue::kNone, false, true, true},
        StoredCase{7, 512, 1024, 2, 128, 8, false, Prologue::kNone, false, true, true}),
    [](const ::testing::TestParamInfo<StoredCase>& info) {
      const StoredCase& c = info.param;
      return absl::StrCat("W", c.weight_bits, "A", c.activation_bits, "_m", c.m, "_", c.out, "x",
                          c.in, "_g", c.group_size, c.static_scale ? "_static" : "",
                          PrologueName(c.prologue), c.integer_scales ? "_intscale" : "",
                          c.symmetric ? "" : "_zp", c.balanced ? "_balanced" : "");
    });

}  // namespace
}  // namespace flatfleet::cuda
