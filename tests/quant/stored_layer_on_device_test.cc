// Which stored quantized layers the GPU's integer GEMMs run (quant/stored_layer_on_device.h): the
// plain W8A8 / W4A8 form and the activation recipes of the GPU quantizer load, every other
// feature is refused with an error naming the layer and the feature, and a backend without
// integer GEMMs says so.
#include "quant/stored_layer_on_device.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant/integer_scale.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/flat_quant_input_transform.h"
#include "quant/flatten_input_transform.h"
#include "quant/recipes.h"
#include "quant/smooth_input_transform.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

constexpr int64_t kOut = 16, kIn = 256;

QuantizedLinearParts PlainParts(int bits, int64_t group_size, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::vector<float> w(kOut * kIn);
  for (float& v : w) v = u(rng);
  QuantizedLinearParts parts;
  parts.in_features = kIn;
  parts.activation_format = {.bits = 8, .symmetric = true, .group_size = 0};
  parts.weight = *QuantizeRtn(w, kOut, kIn, {.bits = bits, .group_size = group_size});
  return parts;
}

absl::Status Check(const std::string& name, QuantizedLinearParts parts) {
  absl::StatusOr<QuantizedLinear> layer = QuantizedLinear::FromParts(std::move(parts));
  EXPECT_TRUE(layer.ok()) << layer.status();
  return layer.ok() ? CheckRunsOnDevice(name, *layer) : layer.status();
}

void ExpectRefused(const absl::Status& status, const std::string& name, const std::string& what) {
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find(name), std::string::npos) << status;
  EXPECT_NE(status.message().find(what), std::string::npos) << status;
  EXPECT_NE(status.message().find("--device cpu"), std::string::npos) << status;
}

TEST(StoredLayerOnDeviceTest, PlainW8A8AndW4A8Run) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  EXPECT_TRUE(Check("model.layers.0.mlp.down_proj", PlainParts(8, 0, rng)).ok());
  EXPECT_TRUE(Check("model.layers.0.mlp.down_proj", PlainParts(4, 128, rng)).ok());
  EXPECT_TRUE(Check("model.layers.0.mlp.down_proj", PlainParts(4, 0, rng)).ok());
}

// 2- and 3-bit weights (asymmetric as w3a8 / w2a8, ABQ's balanced codes) run on the W4A8 GEMMs as
// INT4 operands; a balanced 4-bit weight's operands (+-15) do not fit and are refused.
TEST(StoredLayerOnDeviceTest, LowBitWeightsRunAsInt4Operands) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const std::string name = "model.layers.1.mlp.gate_up_proj";
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::vector<float> w(kOut * kIn);
  for (float& v : w) v = u(rng);
  for (int bits : {2, 3}) {
    for (bool symmetric : {true, false}) {
      for (bool balanced : {false, true}) {
        if (balanced && !symmetric) continue;
        QuantizedLinearParts parts = PlainParts(8, 0, rng);
        parts.weight = *QuantizeRtn(
            w, kOut, kIn,
            {.bits = bits, .symmetric = symmetric, .group_size = 128, .balanced = balanced});
        EXPECT_TRUE(Check(name, parts).ok()) << bits << " " << symmetric << " " << balanced;
      }
    }
  }
  QuantizedLinearParts balanced4 = PlainParts(8, 0, rng);
  balanced4.weight = *QuantizeRtn(
      w, kOut, kIn, {.bits = 4, .symmetric = true, .group_size = 128, .balanced = true});
  ExpectRefused(Check(name, balanced4), name, "balanced 4-bit weights");
}

// FlatQuant's trained Kronecker transform runs (kronecker_transform.h), its learned clip with it.
TEST(StoredLayerOnDeviceTest, FlatQuantKroneckerTransformRuns) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  std::vector<float> p1(16 * 16, 0.0f), p2(16 * 16, 0.0f);
  for (int i = 0; i < 16; ++i) p1[i * 17] = p2[i * 17] = 1.0f;
  auto flat =
      FlatQuantInputTransform::Create(std::vector<float>(kIn, 1.5f), 16, p1, 16, p2, 0.9f, 1.0f);
  ASSERT_TRUE(flat.ok()) << flat.status();
  auto chain = InputTransformChain::Create({*flat});
  ASSERT_TRUE(chain.ok()) << chain.status();
  QuantizedLinearParts parts = PlainParts(4, 0, rng);
  parts.activation_format = {.bits = 4, .symmetric = true, .group_size = 0, .clip_ratio = 0.9f};
  parts.transforms = *chain;
  EXPECT_TRUE(Check("model.layers.0.self_attn.qkv_proj", parts).ok());
}

// The activation-side recipes the GPU runs (int8_activation_quantizer.h, hadamard_transform.h):
// low-bit symmetric per-token codes (W4A4), the randomized Hadamard rotation, static per-tensor
// scales, SmoothQuant's smoothing, FlattenQuant's channel split, and Integer Scale's
// multipliers (integer_scale_epilogue.h).
TEST(StoredLayerOnDeviceTest, ActivationRecipesOfTheQuantizerRun) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const std::string name = "model.layers.1.mlp.gate_up_proj";
  for (int bits : {2, 3, 4, 6}) {
    QuantizedLinearParts low = PlainParts(4, 0, rng);
    low.activation_format.bits = bits;
    EXPECT_TRUE(Check(name, low).ok()) << bits;
  }
  QuantizedLinearParts rotated = PlainParts(4, 0, rng);
  absl::StatusOr<QuantRecipe> hadamard = RecipeByName("w4a4-hadamard");
  ASSERT_TRUE(hadamard.ok()) << hadamard.status();
  absl::StatusOr<InputTransformChain> chain = OnlineTransformsFor(*hadamard, kIn);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_FALSE(chain->empty());
  rotated.transforms = *chain;
  EXPECT_TRUE(Check(name, rotated).ok());

  QuantizedLinearParts static_scale = PlainParts(8, 0, rng);
  static_scale.static_activation_scale = 0x2000;  // an FP16 scale
  EXPECT_TRUE(Check(name, static_scale).ok());

  QuantizedLinearParts smoothed = PlainParts(4, 128, rng);
  auto smooth = SmoothInputTransform::Create(std::vector<float>(kIn, 0.5f), 0.5);
  ASSERT_TRUE(smooth.ok()) << smooth.status();
  auto smooth_chain = InputTransformChain::Create({*smooth});
  ASSERT_TRUE(smooth_chain.ok()) << smooth_chain.status();
  smoothed.transforms = *smooth_chain;
  smoothed.static_activation_scale = 0x2400;
  EXPECT_TRUE(Check(name, smoothed).ok());

  // A flattened layer's weight has the grown K: two inputs split in 3 give kIn + 4 columns.
  std::vector<int32_t> splits(kIn, 1);
  splits[5] = 3;
  splits[200] = 3;
  auto flatten = FlattenInputTransform::Create(splits);
  ASSERT_TRUE(flatten.ok()) << flatten.status();
  auto flatten_chain = InputTransformChain::Create({*flatten});
  ASSERT_TRUE(flatten_chain.ok()) << flatten_chain.status();
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::vector<float> w(kOut * (kIn + 4));
  for (float& v : w) v = u(rng);
  QuantizedLinearParts flattened;
  flattened.in_features = kIn;
  flattened.activation_format = {.bits = 4, .symmetric = true, .group_size = 0};
  flattened.weight = *QuantizeRtn(w, kOut, kIn + 4, {.bits = 4, .group_size = 0});
  flattened.transforms = *flatten_chain;
  flattened.static_activation_scale = 0x2000;
  EXPECT_TRUE(Check(name, flattened).ok());

  // Integer Scale's multipliers on 4-bit groups.
  QuantizedLinearParts grouped = PlainParts(4, 128, rng);
  auto scaled = MakeIntegerScaledWeight(grouped.weight, grouped.activation_format);
  ASSERT_TRUE(scaled.ok()) << scaled.status();
  QuantizedLinearParts intscale;
  intscale.in_features = kIn;
  intscale.activation_format = grouped.activation_format;
  intscale.gemm_kind = LinearGemmKind::kIntegerScales;
  intscale.integer_scaled = *scaled;
  EXPECT_TRUE(Check(name, intscale).ok());
}

TEST(StoredLayerOnDeviceTest, FeaturesWithoutAGpuKernelAreRefused) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const std::string name = "model.layers.2.self_attn.o_proj";

  QuantizedLinearParts asymmetric = PlainParts(4, 0, rng);
  asymmetric.activation_format.bits = 4;
  asymmetric.activation_format.symmetric = false;
  ExpectRefused(Check(name, asymmetric), name, "4-bit asymmetric activations");

  // Two transforms in a row (smoothing then flattening) are not one gather-and-divide.
  QuantizedLinearParts chained = PlainParts(8, 0, rng);
  auto smooth = SmoothInputTransform::Create(std::vector<float>(kIn, 2.0f), 0.5);
  ASSERT_TRUE(smooth.ok()) << smooth.status();
  auto flatten = FlattenInputTransform::Create(std::vector<int32_t>(kIn, 1));
  ASSERT_TRUE(flatten.ok()) << flatten.status();
  auto two = InputTransformChain::Create({*smooth, *flatten});
  ASSERT_TRUE(two.ok()) << two.status();
  chained.transforms = *two;
  ExpectRefused(Check(name, chained), name, "chain of online input transforms (smooth + flatten)");

  QuantizedLinearParts w6 = PlainParts(6, 128, rng);
  ExpectRefused(Check(name, w6), name, "6-bit weights");

  const std::string expert = "model.layers.0.block_sparse_moe.experts.3.w1";
  ExpectRefused(Check(expert, PlainParts(8, 0, rng)), expert, "MoE experts");
}

TEST(StoredLayerOnDeviceTest, HostBackendsHaveNoIntegerGemmEntry) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  QuantizedLinearParts parts = PlainParts(8, 0, rng);
  kernels::QuantizedLinearSource source;
  source.name = "model.layers.1.mlp.gate_up_proj";
  source.weight = &parts.weight;
  absl::StatusOr<std::unique_ptr<kernels::LinearWeight>> prepared =
      kernels::cpu::DefaultCpuBackend().PrepareQuantizedLinear(source);
  EXPECT_EQ(prepared.status().code(), absl::StatusCode::kUnimplemented) << prepared.status();
  EXPECT_NE(prepared.status().message().find("gate_up_proj"), std::string::npos);
}

}  // namespace
}  // namespace flatfleet::quant
