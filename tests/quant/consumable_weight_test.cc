// QuantizedLinear::Create with the weight handed over (consumable_weight, what layer-by-layer
// quantization does with each linear's unpacked weight): the same layer as with a copy, the
// values moved out only when no transform rewrites them.
#include <vector>

#include "gtest/gtest.h"
#include "quant/gptq_device_backend.h"
#include "quant/quantized_linear.h"
#include "quant/recipes.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

class ConsumableWeightTest : public test_util::RandomTest {};

void ExpectSameLayer(const QuantizedLinear& a, const QuantizedLinear& b) {
  const QuantizedLinearParts pa = a.ToParts(), pb = b.ToParts();
  EXPECT_EQ(pa.gemm_kind, pb.gemm_kind);
  EXPECT_EQ(pa.weight.codes, pb.weight.codes);
  EXPECT_EQ(pa.weight.scales, pb.weight.scales);
  EXPECT_EQ(pa.integer_scaled.weight.codes, pb.integer_scaled.weight.codes);
  EXPECT_EQ(pa.integer_scaled.multipliers, pb.integer_scaled.multipliers);
  EXPECT_EQ(pa.integer_scaled.base_scales, pb.integer_scaled.base_scales);
  EXPECT_EQ(pa.bias, pb.bias);
}

TEST_F(ConsumableWeightTest, HandedOverWeightGivesTheCopiedLayer) {
  const int64_t out = 24, in = 256;
  const std::vector<float> values = Gaussian(out * in);
  const Tensor bias({out}, Gaussian(out));
  std::vector<double> hessian(in * in, 0.0);
  const std::vector<float> x = Gaussian(64 * in);
  for (int64_t r = 0; r < 64; ++r) {
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t j = 0; j < in; ++j) hessian[i * in + j] += double{x[r * in + i]} * x[r * in + j];
    }
  }
  ASSERT_EQ(SelectedGptqDevice(), GptqDevice::kCpu);
  for (const char* name : {"w4a8", "w4a8-gptq", "w4a4-hadamard"}) {
    SCOPED_TRACE(name);
    const QuantRecipe recipe = *RecipeByName(name);
    auto transforms = OnlineTransformsFor(recipe, in);
    ASSERT_TRUE(transforms.ok()) << transforms.status();
    const bool gptq = recipe.spec.weight_quantizer == WeightQuantizer::kGptq;
    const Tensor copied_from({out, in}, values);
    auto copied = QuantizedLinear::Create(copied_from, &bias, recipe, nullptr, *transforms,
                                          gptq ? GptqHessian(&hessian) : GptqHessian());
    ASSERT_TRUE(copied.ok()) << copied.status();
    Tensor handed({out, in}, values);
    auto consumed = QuantizedLinear::Create(handed, &bias, recipe, nullptr, *transforms,
                                            gptq ? GptqHessian(&hessian) : GptqHessian(), &handed);
    ASSERT_TRUE(consumed.ok()) << consumed.status();
    ExpectSameLayer(*consumed, *copied);
    // The float path runs on the moved values, as on the copy.
    std::vector<float> ya(2 * out), yb(2 * out);
    const std::span<const float> rows(x.data(), 2 * in);
    ASSERT_TRUE(consumed->ForwardFloat(rows, 2, ya).ok());
    ASSERT_TRUE(copied->ForwardFloat(rows, 2, yb).ok());
    EXPECT_EQ(ya, yb);
    EXPECT_EQ(handed.vector().empty(), transforms->empty()) << "moved only without transforms";
  }
  // Only the weight itself may be handed over.
  Tensor other({out, in}, values);
  const Tensor weight({out, in}, values);
  EXPECT_FALSE(QuantizedLinear::Create(weight, &bias, *RecipeByName("w4a8"), nullptr,
                                       InputTransformChain(), {}, &other)
                   .ok());
}

}  // namespace
}  // namespace flatfleet::quant
