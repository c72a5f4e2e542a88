// Which stored quantized layers the GPU's integer GEMMs run (quant/stored_layer_on_device.h):
// the plain W8A8 / W4A8 form loads, every other feature is refused
// with an error naming the layer and the feature, and a backend without integer GEMMs says so.
#include "quant/stored_layer_on_device.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/recipes.h"
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

TEST(StoredLayerOnDeviceTest, FeaturesWithoutAGpuKernelAreRefused) {
  const uint64_t seed = test_util::FreshSeed();
  SCOPED_TRACE(::testing::Message() << "FLATFLEET_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const std::string name = "model.layers.2.self_attn.o_proj";

  QuantizedLinearParts rotated = PlainParts(4, 0, rng);
  absl::StatusOr<QuantRecipe> hadamard = RecipeByName("w4a4-hadamard");
  ASSERT_TRUE(hadamard.ok()) << hadamard.status();
  absl::StatusOr<InputTransformChain> chain = OnlineTransformsFor(*hadamard, kIn);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_FALSE(chain->empty());
  rotated.transforms = *chain;
  ExpectRefused(Check(name, rotated), name, "online input transform");

  QuantizedLinearParts static_scale = PlainParts(8, 0, rng);
  static_scale.static_activation_scale = 0x2000;  // an FP16 scale
  ExpectRefused(Check(name, static_scale), name, "static per-tensor activation scale");

  QuantizedLinearParts a4 = PlainParts(4, 0, rng);
  a4.activation_format.bits = 4;
  ExpectRefused(Check(name, a4), name, "4-bit activations");

  QuantizedLinearParts w3 = PlainParts(3, 128, rng);
  ExpectRefused(Check(name, w3), name, "3-bit weights");

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
