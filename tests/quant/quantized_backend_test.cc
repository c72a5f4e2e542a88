// QuantizedCpuBackend's Linear against the integer reference GEMMs called directly on operands
// the test quantizes itself, the float pass-through of the online rotation, QUIK's outlier
// choice, and the recipe table's errors.
#include "quant/quantized_backend.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/hadamard.h"
#include "kernels/cpu/quant/integer_scale.h"
#include "kernels/cpu/quant/quantized_gemm.h"
#include "kernels/cpu/quant/quik_gemm.h"
#include "kernels/cpu/quant/rtn_quantizer.h"
#include "quant/data_dependent_linear.h"
#include "quant/float_linear_filter.h"
#include "quant/recipes.h"
#include "quant/weight_clip_search.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

using ::testing::HasSubstr;

// y = x W^T in double.
std::vector<double> FloatLinear(const std::vector<float>& x, int64_t m, const std::vector<float>& w,
                                int64_t n, int64_t k) {
  std::vector<double> y(m * n, 0.0);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(x[r * k + i]) * w[j * k + i];
      y[r * n + j] = sum;
    }
  }
  return y;
}

QuantFormat WeightFormat(const QuantSpec& spec, int64_t cols) {
  QuantFormat format;
  format.bits = spec.weight.bits;
  format.symmetric = spec.weight.symmetric;
  format.group_size = EffectiveGroupSize(spec.weight.group_size, cols);
  format.clip_ratio = static_cast<float>(spec.weight.clip_ratio);
  return format;
}

QuantFormat ActivationFormat(const QuantSpec& spec) {
  QuantFormat format;
  format.bits = spec.activation.bits;
  format.symmetric = spec.activation.symmetric;
  format.clip_ratio = static_cast<float>(spec.activation.clip_ratio);
  return format;
}

class RecipeLinearTest : public test_util::RandomTest,
                         public ::testing::WithParamInterface<std::string> {
 protected:
  // Activations with a few large channels, like real LLM inputs.
  std::vector<float> Activations(int64_t m, int64_t k) {
    std::vector<float> x = Gaussian(m * k);
    for (int64_t r = 0; r < m; ++r) {
      x[r * k + 3] *= 30.0f;
      x[r * k + k / 2] *= 20.0f;
    }
    return x;
  }
};

// The backend's output equals the reference GEMM on independently quantized operands, bit for
// bit; K = 320 also exercises the group-size fallback (128 -> 80).
TEST_P(RecipeLinearTest, LinearEqualsIntegerReferenceGemm) {
  absl::StatusOr<QuantRecipe> recipe = RecipeByName(GetParam());
  ASSERT_TRUE(recipe.ok()) << recipe.status();
  const QuantSpec& spec = recipe->spec;
  for (int64_t k : {256, 320}) {
    SCOPED_TRACE("K = " + std::to_string(k));
    const int64_t n = UniformInt(16, 40);
    const int64_t m = UniformInt(1, 9);
    const std::vector<float> w = Gaussian(n * k, 0.05f);
    const std::vector<float> calibration_x = Activations(24, k);
    const std::vector<float> x = Activations(m, k);

    auto backend = QuantizedCpuBackend::Create(*recipe, {});
    ASSERT_TRUE(backend.ok()) << backend.status();
    const Tensor weight({n, k}, w);
    auto handle = (*backend)->PrepareQuantizedLinear(weight, nullptr);
    ASSERT_TRUE(handle.ok()) << handle.status();
    (*backend)->set_mode(LinearMode::kCalibrate);
    Tensor calibration_in({24, k}, calibration_x);
    Tensor calibration_out({24, n});
    ASSERT_TRUE((*backend)->TryLinear(**handle, calibration_in, calibration_out).ok());
    (*backend)->set_mode(LinearMode::kQuantized);
    Tensor input({m, k}, x);
    Tensor output({m, n});
    absl::Status run = (*backend)->TryLinear(**handle, input, output);
    ASSERT_TRUE(run.ok()) << run;

    // The same computation from the reference pieces.
    std::vector<float> folded_w = w;
    std::vector<float> rotated_x = x;
    std::vector<float> rotated_calibration = calibration_x;
    if (spec.transform.kind == TransformKind::kHadamard) {
      auto rotation = RandomizedHadamard::Create(k, spec.transform.seed);
      ASSERT_TRUE(rotation.ok());
      rotation->FoldIntoWeightRows(folded_w, n);
      rotation->ApplyToActivationRows(rotated_x, m);
      rotation->ApplyToActivationRows(rotated_calibration, 24);
    }
    const QuantFormat activation_format = ActivationFormat(spec);
    std::vector<float> expected;
    if (spec.outlier_channels > 0) {
      std::vector<int64_t> outliers =
          SelectOutlierChannels(rotated_calibration, 24, k, spec.outlier_channels);
      EXPECT_THAT(outliers, ::testing::IsSupersetOf({int64_t{3}, k / 2}));
      auto quik = QuantizeQuikWeight(folded_w, n, k, outliers,
                                     WeightFormat(spec, k - spec.outlier_channels));
      ASSERT_TRUE(quik.ok()) << quik.status();
      auto result = QuikGemm(rotated_x, m, *quik, activation_format);
      ASSERT_TRUE(result.ok()) << result.status();
      expected = result->output;
    } else {
      const QuantFormat weight_format = WeightFormat(spec, k);
      absl::StatusOr<QuantizedMatrix> quantized_w;
      if (recipe->weight_clip_search) {
        auto searched = QuantizeRtnWithClipSearch(folded_w, n, k, weight_format);
        ASSERT_TRUE(searched.ok()) << searched.status();
        quantized_w = searched->matrix;
      } else {
        quantized_w = QuantizeRtn(folded_w, n, k, weight_format);
      }
      ASSERT_TRUE(quantized_w.ok()) << quantized_w.status();
      absl::StatusOr<QuantizedMatrix> quantized_x;
      if (spec.activation.granularity == ActivationGranularity::kPerTensor) {
        auto scale = CalibratePerTensorScale(rotated_calibration, spec.activation.bits,
                                             activation_format.clip_ratio);
        ASSERT_TRUE(scale.ok());
        quantized_x = QuantizeWithStaticScale(rotated_x, m, k, spec.activation.bits, *scale);
      } else {
        quantized_x = QuantizeRtn(rotated_x, m, k, activation_format);
      }
      ASSERT_TRUE(quantized_x.ok()) << quantized_x.status();
      if (spec.scale_kind == ScaleKind::kInteger) {
        auto scaled =
            MakeIntegerScaledWeight(*quantized_w, activation_format, spec.max_amplifier_bits);
        ASSERT_TRUE(scaled.ok()) << scaled.status();
        auto result = IntegerScaleGemm(*quantized_x, *scaled);
        ASSERT_TRUE(result.ok()) << result.status();
        expected = result->output;
      } else {
        // The format-checked entry point where there is one: the same integers either way.
        absl::StatusOr<QuantizedGemmResult> result;
        const int wb = spec.weight.bits, ab = spec.activation.bits;
        if (wb == 8 && ab == 8) {
          result = GemmW8A8(*quantized_x, *quantized_w);
        } else if (wb == 4 && ab == 8) {
          result = GemmW4A8(*quantized_x, *quantized_w);
        } else if (wb == 4 && ab == 4) {
          result = GemmW4A4(*quantized_x, *quantized_w);
        } else {
          result = QuantizedGemm(*quantized_x, *quantized_w);
        }
        ASSERT_TRUE(result.ok()) << result.status();
        expected = result->output;
      }
    }
    ASSERT_EQ(static_cast<int64_t>(expected.size()), m * n);
    for (int64_t i = 0; i < m * n; ++i) {
      ASSERT_EQ(output.data()[i], expected[i]) << "element " << i;
    }
    // And the quantized layer is still the layer: within a loose bound of the float result.
    const std::vector<double> exact = FloatLinear(x, m, w, n, k);
    double diff = 0.0, norm = 0.0;
    for (int64_t i = 0; i < m * n; ++i) {
      diff += (output.data()[i] - exact[i]) * (output.data()[i] - exact[i]);
      norm += exact[i] * exact[i];
    }
    EXPECT_LT(std::sqrt(diff / norm), 1.0) << "relative error of the quantized layer";
  }
}

INSTANTIATE_TEST_SUITE_P(AllRecipes, RecipeLinearTest,
                         ::testing::Values("w8a8", "w8a8-static", "w4a8", "w4a8-intscale", "w4a4",
                                           "w4a4-hadamard", "w4a4-quik", "w3a8", "w2a8"));

class QuantizedBackendTest : public test_util::RandomTest {};

TEST_F(QuantizedBackendTest, EveryImplementedRecipeIsCovered) {
  // The first nine by RecipeLinearTest; SmoothQuant, GPTQ and FlattenQuant by
  // DataDependentRecipeTest; the calibration-trained recipes (FlatQuant, ABQ and its ablations)
  // by CalibratedLinearTest.BackendTrainsAndCorrectsAfterCalibration (calibrated_linear_test.cc).
  EXPECT_THAT(
      ImplementedRecipeNames(),
      ::testing::UnorderedElementsAre(
          "w8a8", "w8a8-static", "w4a8", "w4a8-intscale", "w4a4", "w4a4-hadamard", "w4a4-quik",
          "w3a8", "w2a8", "w4a4-flatquant", "w3a8-abq", "w3a8-bal", "w3a8-corr", "w2a8-abq",
          "w2a8-bal", "w2a8-corr", "w8a8-smooth", "w8a8-smooth-static", "w4a8-smooth",
          "w8a8-hadamard-gptq", "w4a8-gptq", "w3a8-gptq", "w4a4-flatten", "w8a8-flatten",
          "w4a8-gptq-asym", "w4a4-hadamard-gptq"));
}

class DataDependentRecipeTest : public test_util::RandomTest,
                                public ::testing::WithParamInterface<std::string> {};

// Recipes built from calibration statistics: unusable before calibration, and after it the
// backend's layer is exactly what QuantizeDataDependentLinear makes from the same statistics
// (data_dependent_linear_test.cc checks those pieces against independent computations).
TEST_P(DataDependentRecipeTest, BackendQuantizesFromItsCalibration) {
  auto recipe = RecipeByName(GetParam());
  ASSERT_TRUE(recipe.ok()) << recipe.status();
  const int64_t n = UniformInt(16, 40), k = 256, rows = 48, m = UniformInt(1, 9);
  const Tensor weight({n, k}, Gaussian(n * k, 0.05f));
  std::vector<float> x = Gaussian(rows * k);
  for (int64_t r = 0; r < rows; ++r) x[r * k + 7] *= 40.0f;
  auto backend = QuantizedCpuBackend::Create(*recipe, {});
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto handle = (*backend)->PrepareQuantizedLinear(weight, nullptr);
  ASSERT_TRUE(handle.ok()) << handle.status();
  Tensor input({m, k}, Gaussian(m * k)), output({m, n});
  EXPECT_TRUE(absl::IsFailedPrecondition((*backend)->TryLinear(**handle, input, output)));

  (*backend)->set_mode(LinearMode::kCalibrate);
  Tensor calibration_in({rows, k}, x), calibration_out({rows, n});
  ASSERT_TRUE((*backend)->TryLinear(**handle, calibration_in, calibration_out).ok());
  (*backend)->set_mode(LinearMode::kQuantized);
  absl::Status run = (*backend)->TryLinear(**handle, input, output);
  ASSERT_TRUE(run.ok()) << run;

  auto base = OnlineTransformsFor(*recipe, k);
  ASSERT_TRUE(base.ok());
  ActivationCalibration calibration;
  calibration.Record(base->ApplyToActivations(x, rows), rows, k);
  calibration.RecordRaw(x, rows, k, CalibrationOptionsFor(*recipe));
  auto expected = QuantizeDataDependentLinear(weight, nullptr, *recipe, &calibration, *base);
  ASSERT_TRUE(expected.ok()) << expected.status();
  std::vector<float> y(m * n);
  ASSERT_TRUE(expected->Forward(input.span(), m, y).ok());
  EXPECT_EQ(output.vector(), y);
}

INSTANTIATE_TEST_SUITE_P(DataDependentRecipes, DataDependentRecipeTest,
                         ::testing::Values("w8a8-smooth", "w8a8-smooth-static", "w4a8-smooth",
                                           "w8a8-hadamard-gptq", "w4a8-gptq", "w3a8-gptq",
                                           "w4a4-flatten", "w8a8-flatten", "w4a8-gptq-asym",
                                           "w4a4-hadamard-gptq"));

TEST_F(QuantizedBackendTest, HadamardPassthroughEqualsFloatLinear) {
  auto recipe = RecipeByName("w4a4-hadamard");
  ASSERT_TRUE(recipe.ok());
  // 688 = 16 * 43 has a random orthogonal block; 256 is a pure Walsh-Hadamard.
  for (int64_t k : {256, 688}) {
    const int64_t n = UniformInt(8, 32);
    const int64_t m = UniformInt(1, 7);
    const std::vector<float> w = Gaussian(n * k, 0.05f);
    const std::vector<float> bias = Gaussian(n);
    const std::vector<float> x = Gaussian(m * k);
    auto backend = QuantizedCpuBackend::Create(*recipe, {});
    ASSERT_TRUE(backend.ok());
    const Tensor bias_tensor({n}, bias);
    auto handle = (*backend)->PrepareQuantizedLinear(Tensor({n, k}, w), &bias_tensor);
    ASSERT_TRUE(handle.ok()) << handle.status();
    (*backend)->set_mode(LinearMode::kFloatPassthrough);
    Tensor input({m, k}, x);
    Tensor output({m, n});
    ASSERT_TRUE((*backend)->TryLinear(**handle, input, output).ok());
    const std::vector<double> exact = FloatLinear(x, m, w, n, k);
    double diff = 0.0, norm = 0.0;
    for (int64_t i = 0; i < m * n; ++i) {
      const double expected = exact[i] + bias[i % n];
      diff += (output.data()[i] - expected) * (output.data()[i] - expected);
      norm += expected * expected;
    }
    EXPECT_LE(std::sqrt(diff / norm), 1e-4) << "K = " << k;
  }
}

TEST_F(QuantizedBackendTest, BiasIsAddedAfterTheIntegerGemm) {
  auto recipe = RecipeByName("w8a8");
  ASSERT_TRUE(recipe.ok());
  const int64_t n = 12, k = 64, m = 3;
  const std::vector<float> w = Gaussian(n * k, 0.05f);
  const std::vector<float> bias = Gaussian(n);
  const std::vector<float> x = Gaussian(m * k);
  auto backend = QuantizedCpuBackend::Create(*recipe, {});
  ASSERT_TRUE(backend.ok());
  const Tensor bias_tensor({n}, bias);
  auto with_bias = (*backend)->PrepareQuantizedLinear(Tensor({n, k}, w), &bias_tensor);
  auto without_bias = (*backend)->PrepareQuantizedLinear(Tensor({n, k}, w), nullptr);
  ASSERT_TRUE(with_bias.ok() && without_bias.ok());
  Tensor input({m, k}, x), y1({m, n}), y2({m, n});
  ASSERT_TRUE((*backend)->TryLinear(**with_bias, input, y1).ok());
  ASSERT_TRUE((*backend)->TryLinear(**without_bias, input, y2).ok());
  for (int64_t i = 0; i < m * n; ++i) EXPECT_EQ(y1.data()[i], y2.data()[i] + bias[i % n]);
}

TEST_F(QuantizedBackendTest, QuikWithoutCalibrationUsesWeightColumnNorms) {
  auto recipe = RecipeByName("w4a4-quik");
  ASSERT_TRUE(recipe.ok());
  const int64_t n = 32, k = 128;
  std::vector<float> w = Gaussian(n * k, 0.05f);
  std::vector<int64_t> heavy;
  while (static_cast<int64_t>(heavy.size()) < recipe->spec.outlier_channels) {
    const int64_t c = UniformInt(0, k - 1);
    if (std::find(heavy.begin(), heavy.end(), c) == heavy.end()) heavy.push_back(c);
  }
  for (int64_t c : heavy) {
    for (int64_t r = 0; r < n; ++r) w[r * k + c] *= 10.0f;
  }
  std::sort(heavy.begin(), heavy.end());
  auto backend = QuantizedCpuBackend::Create(*recipe, {});
  ASSERT_TRUE(backend.ok());
  auto handle = (*backend)->PrepareQuantizedLinear(Tensor({n, k}, w), nullptr);
  ASSERT_TRUE(handle.ok());
  auto layer = (*handle)->Quantized(*recipe);
  ASSERT_TRUE(layer.ok());
  EXPECT_EQ((*layer)->quik().outlier_channels, heavy);
}

TEST_F(QuantizedBackendTest, StaticScalesWithoutCalibrationAreAnError) {
  auto recipe = RecipeByName("w8a8-static");
  ASSERT_TRUE(recipe.ok());
  auto backend = QuantizedCpuBackend::Create(*recipe, {});
  ASSERT_TRUE(backend.ok());
  auto handle = (*backend)->PrepareQuantizedLinear(Tensor({8, 32}, Gaussian(8 * 32)), nullptr);
  ASSERT_TRUE(handle.ok()) << handle.status();
  Tensor input({2, 32}, Gaussian(64)), output({2, 8});
  const absl::Status status = (*backend)->TryLinear(**handle, input, output);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
}

TEST_F(QuantizedBackendTest, KeptFloatLinearMatchesTheFloatBackend) {
  const Tensor head({100, 64}, Gaussian(100 * 64));
  // Same shape and the very same bytes, another name: must be quantized (names decide).
  const Tensor projection = head;
  const KeepFloatFilter filter = KeepFloatByName();
  EXPECT_TRUE(filter("lm_head"));
  EXPECT_TRUE(filter("model.layers.3.block_sparse_moe.gate"));
  EXPECT_FALSE(filter("model.layers.3.block_sparse_moe.experts.0.w1"));
  EXPECT_FALSE(filter("model.layers.0.self_attn.qkv_proj"));
  EXPECT_FALSE(filter(""));

  auto backend = QuantizedCpuBackend::Create(*RecipeByName("w4a4"), filter);
  ASSERT_TRUE(backend.ok());
  auto head_handle = (*backend)->PrepareQuantizedLinear(head, nullptr, "lm_head");
  auto projection_handle =
      (*backend)->PrepareQuantizedLinear(projection, nullptr, "model.layers.0.mlp.down_proj");
  ASSERT_TRUE(head_handle.ok() && projection_handle.ok());
  EXPECT_TRUE((*head_handle)->kept_float());
  EXPECT_FALSE((*projection_handle)->kept_float());
  EXPECT_EQ((*projection_handle)->name(), "model.layers.0.mlp.down_proj");
  auto float_handle = kernels::cpu::DefaultCpuBackend().PrepareLinear(head, nullptr);
  Tensor input({3, 64}, Gaussian(3 * 64)), y({3, 100}), y_float({3, 100});
  ASSERT_TRUE((*backend)->TryLinear(**head_handle, input, y).ok());
  kernels::cpu::DefaultCpuBackend().Linear(*float_handle, input, y_float);
  EXPECT_EQ(y.vector(), y_float.vector());
}

TEST(RecipesTest, UnknownRecipeListsTheKnownOnes) {
  const auto unknown = RecipeByName("w5a5");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::IsNotFound(unknown.status()));
  EXPECT_THAT(unknown.status().message(), HasSubstr("w5a5"));
  for (const std::string& name : ImplementedRecipeNames()) {
    EXPECT_THAT(unknown.status().message(), HasSubstr(name));
  }
  EXPECT_TRUE(RecipeByName("w4a4-flatten").ok());  // formerly reserved, implemented now
  EXPECT_FALSE(RecipesFromList("w8a8,nope").ok());
  auto list = RecipesFromList("w8a8, w4a4-quik");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].name, "w4a4-quik");
}

TEST(EffectiveGroupSizeTest, FallsBackToTheLargestGpuDivisorOrPerChannel) {
  using enum GroupSizeFallback;
  EXPECT_EQ(ChooseWeightGroupSize(128, 4096), (WeightGroupChoice{128, kNone}));
  EXPECT_EQ(ChooseWeightGroupSize(128, 128), (WeightGroupChoice{0, kNone}));
  EXPECT_EQ(ChooseWeightGroupSize(0, 320), (WeightGroupChoice{0, kNone}));
  EXPECT_EQ(ChooseWeightGroupSize(16, 48), (WeightGroupChoice{16, kNone}));  // asked, divides
  EXPECT_EQ(ChooseWeightGroupSize(128, 320), (WeightGroupChoice{64, kLargestGpuDivisor}));
  EXPECT_EQ(ChooseWeightGroupSize(100, 224), (WeightGroupChoice{32, kLargestGpuDivisor}));
  EXPECT_EQ(ChooseWeightGroupSize(128, 96), (WeightGroupChoice{0, kPerChannel}));
  // No multiple of 32 divides 688 = 16 * 43 or 172 = 4 * 43; 64 <= 128 is one group per row.
  EXPECT_EQ(ChooseWeightGroupSize(128, 688), (WeightGroupChoice{0, kPerChannel}));
  EXPECT_EQ(ChooseWeightGroupSize(128, 172), (WeightGroupChoice{0, kPerChannel}));
  EXPECT_EQ(ChooseWeightGroupSize(128, 64), (WeightGroupChoice{0, kPerChannel}));
  // Every fallback is a size the CUDA W4A8 kernel takes (a multiple of 32 dividing K) or per
  // channel.
  for (int64_t requested : {32, 64, 100, 128, 256}) {
    for (int64_t cols = 1; cols <= 1024; ++cols) {
      const WeightGroupChoice choice = ChooseWeightGroupSize(requested, cols);
      EXPECT_EQ(choice.group_size, EffectiveGroupSize(requested, cols));
      if (choice.fallback == kNone) {
        EXPECT_TRUE(choice.group_size == 0 ? requested >= cols : choice.group_size == requested);
        continue;
      }
      EXPECT_NE(cols % requested, 0) << requested << " " << cols;
      if (choice.fallback == kPerChannel) {
        EXPECT_EQ(choice.group_size, 0);
        if (requested > cols) continue;  // the whole row is the largest divisor below it
        for (int64_t g = 32; g <= requested; g += 32) EXPECT_NE(cols % g, 0);
      } else {
        EXPECT_EQ(choice.group_size % 32, 0);
        EXPECT_EQ(cols % choice.group_size, 0);
        EXPECT_LT(choice.group_size, requested);
        for (int64_t g = choice.group_size + 32; g <= requested; g += 32) {
          EXPECT_NE(cols % g, 0) << "a larger divisor " << g << " of " << cols;
        }
      }
    }
  }
}

// The Backend interface's PrepareLinear has no status: a layer it cannot prepare comes back as a
// handle whose every Linear is an error (no abort). Integer scales over per-channel weights are
// a recipe error, found before any layer.
TEST(QuantizedBackendErrorTest, UnpreparableLayersAreErrorsNotAborts) {
  auto recipe = RecipeByName("w4a8");
  ASSERT_TRUE(recipe.ok());
  auto backend = QuantizedCpuBackend::Create(*recipe, nullptr);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const Tensor weight({4, 8}, std::vector<float>(32, 0.5f));
  const Tensor wrong_bias({3}, std::vector<float>(3, 0.0f));
  std::unique_ptr<kernels::LinearWeight> handle = (*backend)->PrepareLinear(weight, &wrong_bias);
  ASSERT_NE(handle, nullptr);
  EXPECT_EQ(handle->out_features(), 4);
  Tensor x({1, 8}, std::vector<float>(8, 1.0f)), y({1, 4});
  const absl::Status status = (*backend)->TryLinear(*handle, x, y);
  EXPECT_THAT(status.message(), HasSubstr("bias must be [out]"));
  const Tensor not_a_matrix({8}, std::vector<float>(8, 0.5f));
  EXPECT_NE((*backend)->PrepareLinear(not_a_matrix, nullptr), nullptr);

  QuantRecipe per_channel_intscale = *RecipeByName("w4a8-intscale");
  per_channel_intscale.spec.weight.group_size = 0;
  auto refused = QuantizedCpuBackend::Create(per_channel_intscale, nullptr);
  EXPECT_THAT(refused.status().message(), HasSubstr("integer scales need per-group weights"));
}

// w4a8-intscale on widths no GPU group size divides: per-channel scales on the float-scale GEMM,
// identical to w4a8 there.
TEST(QuantizedBackendErrorTest, IntegerScalesFallBackToPerChannelFloatScales) {
  auto intscale = RecipeByName("w4a8-intscale");
  auto plain = RecipeByName("w4a8");
  ASSERT_TRUE(intscale.ok() && plain.ok());
  std::vector<float> values(6 * 172);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.37 * i) * (1 + i % 7);
  const Tensor weight({6, 172}, values);
  auto a = QuantizedLinear::Create(weight, nullptr, *intscale, nullptr);
  auto b = QuantizedLinear::Create(weight, nullptr, *plain, nullptr);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->gemm_kind(), LinearGemmKind::kFloatScales);
  EXPECT_EQ(a->weight().format.group_size, 0);
  EXPECT_EQ(a->weight().codes, b->weight().codes);
  EXPECT_EQ(a->weight().scales, b->weight().scales);
}

}  // namespace
}  // namespace flatfleet::quant
