// The few-token fallback for sparse-MoE experts (quant/expert_calibration_fallback.h): the
// decision, the fallback recipe, every recipe quantizing an expert linear with zero, few and
// enough calibration rows on the QuantizedCpuBackend (no error, finite outputs, the fallback's
// codes equal to the clip-searched RTN reference), and the manifest's expert_calibration.
#include "quant/expert_calibration_fallback.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quant/hadamard.h"
#include "quant/calibrated_linear.h"
#include "quant/quantized_backend.h"
#include "quant/quantized_checkpoint_manifest.h"
#include "quant/recipes.h"
#include "quant/weight_clip_search.h"
#include "tests/quant/test_random.h"

namespace flatfleet::quant {
namespace {

constexpr char kExpertW1[] = "model.layers.0.block_sparse_moe.experts.3.w1";

TEST(ExpertLinearNameTest, ParsesExpertLinearsOnly) {
  auto parsed = ParseExpertLinearName("model.layers.12.block_sparse_moe.experts.7.w2");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->layer, 12);
  EXPECT_EQ(parsed->expert, 7);
  EXPECT_EQ(parsed->projection, "w2");
  for (const char* other : {"model.layers.0.block_sparse_moe.gate", "model.layers.0.mlp.down_proj",
                            "model.layers.0.self_attn.qkv_proj", "lm_head",
                            "model.layers.0.block_sparse_moe.experts.3.w4",
                            "model.layers.0.block_sparse_moe.experts.03.w1",
                            "model.layers.-1.block_sparse_moe.experts.3.w1",
                            "model.layers.0.block_sparse_moe.experts.x.w1",
                            "model.layers.0.block_sparse_moe.experts.3.w1.weight", ""}) {
    EXPECT_FALSE(ParseExpertLinearName(other).has_value()) << other;
  }
}

// The table of expert_calibration_fallback.h: the data-free fallback exactly below the threshold
// and always without rows; damped GPTQ while the Hessian's rank (rows) is below in_features.
TEST(ExpertQuantMethodTest, FallsBackExactlyBelowTheThresholds) {
  QuantRecipe gptq = *RecipeByName("w4a8-gptq");
  QuantRecipe rtn = *RecipeByName("w4a8");
  EXPECT_EQ(gptq.min_expert_tokens, kAutoMinExpertTokens);
  for (int64_t in_features : {256, 300, 4096}) {
    // Auto: ceil(in / 16).
    gptq.min_expert_tokens = kAutoMinExpertTokens;
    EXPECT_EQ(MinExpertTokens(gptq, in_features), (in_features + 15) / 16);
    for (int64_t threshold :
         {kAutoMinExpertTokens, int64_t{0}, int64_t{1}, int64_t{5}, int64_t{16}, int64_t{5000}}) {
      gptq.min_expert_tokens = rtn.min_expert_tokens = threshold;
      const int64_t t = threshold < 0 ? (in_features + 15) / 16 : threshold;
      for (int64_t rows = 0; rows <= 2 * in_features; rows += rows < 40 ? 1 : 37) {
        SCOPED_TRACE(absl::StrFormat("in %d threshold %d rows %d", in_features, threshold, rows));
        const bool data_free = rows == 0 || rows < t;
        EXPECT_EQ(ChooseExpertQuantMethod(gptq, rows, in_features),
                  data_free            ? ExpertQuantMethod::kRtnClipSearch
                  : rows < in_features ? ExpertQuantMethod::kDampedGptq
                                       : ExpertQuantMethod::kCalibrated);
        EXPECT_EQ(ChooseExpertQuantMethod(rtn, rows, in_features),
                  data_free ? ExpertQuantMethod::kRtnClipSearch : ExpertQuantMethod::kCalibrated);
      }
    }
  }
  // A recipe that already damps as much is left as it is.
  gptq.min_expert_tokens = kAutoMinExpertTokens;
  gptq.spec.gptq.damp = kRankDeficientGptqDamp;
  EXPECT_EQ(ChooseExpertQuantMethod(gptq, 100, 256), ExpertQuantMethod::kCalibrated);
  EXPECT_EQ(ExpertQuantMethodName(gptq, ExpertQuantMethod::kCalibrated), "gptq");
  EXPECT_EQ(ExpertQuantMethodName(rtn, ExpertQuantMethod::kCalibrated), "calibrated");
  EXPECT_EQ(ExpertQuantMethodName(gptq, ExpertQuantMethod::kDampedGptq), "gptq-damped");
  EXPECT_EQ(ExpertQuantMethodName(gptq, ExpertQuantMethod::kRtnClipSearch), "rtn-clip-search");
  for (const char* name : {"gptq", "gptq-damped", "calibrated", "rtn-clip-search"}) {
    EXPECT_TRUE(IsExpertQuantMethodName(name)) << name;
  }
  EXPECT_FALSE(IsExpertQuantMethodName("rtn"));
}

// The fallback keeps the formats and the data-independent transform and drops everything else
// built from calibration data but a static activation scale (while there are rows); damped GPTQ
// changes the dampening only.
TEST(ExpertQuantRecipeTest, KeepsFormatsAndDropsDataDependentParts) {
  for (const std::string& name : ImplementedRecipeNames()) {
    SCOPED_TRACE(name);
    const QuantRecipe recipe = *RecipeByName(name);
    EXPECT_EQ(RecipeToJson(ExpertQuantRecipe(recipe, ExpertQuantMethod::kCalibrated, 5)),
              RecipeToJson(recipe));
    EXPECT_TRUE(ExpertQuantUsesStatistics(recipe, ExpertQuantMethod::kCalibrated));
    QuantRecipe damped = ExpertQuantRecipe(recipe, ExpertQuantMethod::kDampedGptq, 5);
    EXPECT_TRUE(ExpertQuantUsesStatistics(damped, ExpertQuantMethod::kDampedGptq));
    EXPECT_EQ(damped.spec.gptq.damp, kRankDeficientGptqDamp);
    damped.spec.gptq.damp = recipe.spec.gptq.damp;
    EXPECT_EQ(RecipeToJson(damped), RecipeToJson(recipe));
    EXPECT_EQ(damped.output_correction, recipe.output_correction);
    // A static activation scale stays while there are rows to take it from.
    const QuantRecipe some_rows = ExpertQuantRecipe(recipe, ExpertQuantMethod::kRtnClipSearch, 3);
    EXPECT_EQ(some_rows.spec.activation.granularity, recipe.spec.activation.granularity);
    EXPECT_EQ(ExpertQuantUsesStatistics(some_rows, ExpertQuantMethod::kRtnClipSearch),
              recipe.spec.activation.granularity == ActivationGranularity::kPerTensor);
    const QuantRecipe fallback = ExpertQuantRecipe(recipe, ExpertQuantMethod::kRtnClipSearch, 0);
    EXPECT_FALSE(ExpertQuantUsesStatistics(fallback, ExpertQuantMethod::kRtnClipSearch));
    EXPECT_EQ(fallback.spec.weight.bits, recipe.spec.weight.bits);
    EXPECT_EQ(fallback.spec.weight.group_size, recipe.spec.weight.group_size);
    EXPECT_EQ(fallback.spec.weight.symmetric, recipe.spec.weight.symmetric);
    EXPECT_EQ(fallback.spec.weight.balanced, recipe.spec.weight.balanced);
    EXPECT_EQ(fallback.spec.activation.bits, recipe.spec.activation.bits);
    EXPECT_EQ(fallback.spec.activation.symmetric, recipe.spec.activation.symmetric);
    EXPECT_EQ(fallback.spec.scale_kind, recipe.spec.scale_kind);
    EXPECT_EQ(fallback.spec.outlier_channels, recipe.spec.outlier_channels);
    EXPECT_EQ(fallback.spec.weight_quantizer, WeightQuantizer::kRtn);
    EXPECT_TRUE(fallback.weight_clip_search);
    EXPECT_FALSE(fallback.output_correction);
    EXPECT_FALSE(fallback.spec.smooth.enabled);
    EXPECT_FALSE(fallback.spec.flatten.enabled);
    EXPECT_EQ(fallback.spec.activation.granularity, ActivationGranularity::kPerToken);
    EXPECT_EQ(fallback.spec.transform.kind, recipe.spec.transform.kind == TransformKind::kKronecker
                                                ? TransformKind::kNone
                                                : recipe.spec.transform.kind);
  }
}

class ExpertLinearTest : public test_util::RandomTest,
                         public ::testing::WithParamInterface<std::string> {};

// Every recipe quantizes an expert linear that recorded 0, threshold - 1 and threshold rows
// without error and with finite outputs; below the threshold its codes are the clip-searched
// RTN of the (rotated) weight whatever rows it saw; at the threshold (rows < in_features) GPTQ
// recipes give exactly GPTQ with dampening kRankDeficientGptqDamp, the others their own.
TEST_P(ExpertLinearTest, ZeroFewAndEnoughRowsQuantize) {
  QuantRecipe recipe = *RecipeByName(GetParam());
  recipe.min_expert_tokens = 6;
  const int64_t n = 48, k = 256;
  const std::vector<float> w = Gaussian(n * k, 0.05f);
  const Tensor weight({n, k}, w);
  const std::vector<float> x = Gaussian(5 * k);
  std::optional<QuantizedMatrix> fallback_codes;
  for (int64_t rows : {int64_t{0}, recipe.min_expert_tokens - 1, recipe.min_expert_tokens}) {
    SCOPED_TRACE("rows " + std::to_string(rows));
    auto backend = QuantizedCpuBackend::Create(recipe, {});
    ASSERT_TRUE(backend.ok()) << backend.status();
    (*backend)->set_quantize_at_prepare(false);
    auto handle = (*backend)->PrepareQuantizedLinear(weight, nullptr, kExpertW1);
    ASSERT_TRUE(handle.ok()) << handle.status();
    EXPECT_TRUE((*handle)->is_expert());
    (*backend)->set_mode(LinearMode::kCalibrate);
    if (rows > 0) {  // the MoE never calls an expert that no row is routed to
      Tensor calibration_in({rows, k}, Gaussian(rows * k));
      Tensor calibration_out({rows, n});
      ASSERT_TRUE((*backend)->TryLinear(**handle, calibration_in, calibration_out).ok());
    }
    const ActivationCalibration recorded = (*handle)->calibration();
    (*backend)->set_mode(LinearMode::kQuantized);
    Tensor input({5, k}, x);
    Tensor output({5, n});
    const absl::Status run = (*backend)->TryLinear(**handle, input, output);
    ASSERT_TRUE(run.ok()) << run;
    for (float v : output.vector()) ASSERT_TRUE(std::isfinite(v));
    EXPECT_EQ((*handle)->quantized_rows(), rows);
    const bool fallback = rows < recipe.min_expert_tokens;
    const bool gptq = recipe.spec.weight_quantizer == WeightQuantizer::kGptq;
    EXPECT_EQ((*handle)->expert_method(), fallback ? ExpertQuantMethod::kRtnClipSearch
                                          : gptq   ? ExpertQuantMethod::kDampedGptq
                                                   : ExpertQuantMethod::kCalibrated);
    auto layer = (*handle)->Quantized(recipe);
    ASSERT_TRUE(layer.ok()) << layer.status();
    if (!fallback) {
      EXPECT_EQ((*layer)->static_activation_scale().has_value(),
                recipe.spec.activation.granularity == ActivationGranularity::kPerTensor);
      if (gptq) {  // the reference: the same statistics, the recipe with the raised dampening
        QuantRecipe damped = recipe;
        damped.spec.gptq.damp = kRankDeficientGptqDamp;
        auto base = OnlineTransformsFor(recipe, k);
        ASSERT_TRUE(base.ok());
        auto reference = BuildCalibratedLinear(weight, nullptr, damped, &recorded, *base);
        ASSERT_TRUE(reference.ok()) << reference.status();
        EXPECT_EQ((*layer)->weight().codes, reference->weight().codes);
        EXPECT_EQ((*layer)->weight().scales, reference->weight().scales);
        auto plain = BuildCalibratedLinear(weight, nullptr, recipe, &recorded, *base);
        ASSERT_TRUE(plain.ok()) << plain.status();
        EXPECT_NE((*layer)->weight().codes, plain->weight().codes)
            << "the dampening changed nothing";
      }
      continue;
    }
    EXPECT_EQ((*layer)->static_activation_scale().has_value(),
              rows > 0 && recipe.spec.activation.granularity == ActivationGranularity::kPerTensor);
    EXPECT_TRUE((*layer)->output_shift().empty());
    if (recipe.spec.outlier_channels > 0) continue;  // QUIK's weight: not a QuantizedMatrix
    // The reference: RTN with the clip search of the weight as the GEMM sees it.
    std::vector<float> folded = w;
    ASSERT_NE(recipe.spec.transform.kind == TransformKind::kHadamard,
              (*layer)->transforms().empty());
    if (recipe.spec.transform.kind == TransformKind::kHadamard) {
      auto rotation = RandomizedHadamard::Create(k, recipe.spec.transform.seed);
      ASSERT_TRUE(rotation.ok());
      rotation->FoldIntoWeightRows(folded, n);
    }
    QuantFormat format;
    format.bits = recipe.spec.weight.bits;
    format.symmetric = recipe.spec.weight.symmetric;
    format.balanced = recipe.spec.weight.balanced;
    format.group_size = EffectiveGroupSize(recipe.spec.weight.group_size, k);
    auto reference = QuantizeRtnWithClipSearch(folded, n, k, format);
    ASSERT_TRUE(reference.ok()) << reference.status();
    const QuantizedMatrix& got = (*layer)->weight();
    EXPECT_EQ(got.codes, reference->matrix.codes);
    EXPECT_EQ(got.scales, reference->matrix.scales);
    EXPECT_EQ(got.zero_points, reference->matrix.zero_points);
    // Data-free: the rows it saw change nothing.
    if (fallback_codes.has_value()) {
      EXPECT_EQ(got.codes, fallback_codes->codes);
    } else {
      fallback_codes = got;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, ExpertLinearTest,
                         ::testing::Values("w8a8", "w8a8-static", "w4a8", "w4a8-intscale",
                                           "w4a4-hadamard", "w4a4-quik", "w3a8", "w4a4-flatquant",
                                           "w3a8-abq", "w8a8-smooth", "w8a8-smooth-static",
                                           "w4a8-smooth", "w8a8-hadamard-gptq", "w4a8-gptq",
                                           "w3a8-gptq", "w4a8-gptq-asym", "w4a4-hadamard-gptq"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

// The fallback is for experts only: any other linear without calibration keeps the recipe's
// behaviour (GPTQ refuses to quantize without its Hessian).
TEST(ExpertLinearTest, OtherLinearsDoNotFallBack) {
  const QuantRecipe recipe = *RecipeByName("w4a8-gptq");
  auto backend = QuantizedCpuBackend::Create(recipe, {});
  ASSERT_TRUE(backend.ok());
  (*backend)->set_quantize_at_prepare(false);
  const Tensor weight({16, 128}, std::vector<float>(16 * 128, 0.01f));
  auto handle = (*backend)->PrepareQuantizedLinear(weight, nullptr, "model.layers.0.mlp.down_proj");
  ASSERT_TRUE(handle.ok());
  EXPECT_FALSE((*handle)->is_expert());
  EXPECT_TRUE(absl::IsFailedPrecondition((*handle)->Quantized(recipe).status()));
}

std::string ManifestWithExperts(const std::string& experts) {
  return R"({"format": "flatfleet-quantized", "format_version": 1,
    "recipe": {"name": "w4a8-gptq", "spec": {"method": "integer_scale"},
               "weight_clip_search": false, "min_expert_tokens": 4},
    "source_model": "/m", "calibration": {}, "tensor_files": ["model.safetensors"],
    "layers": [], "float_layers": [], "expert_calibration": )" +
         experts + "}";
}

TEST(ExpertCalibrationManifestTest, RoundTripsAndRejectsBadEntries) {
  auto parsed = ParseQuantizedCheckpointManifest(ManifestWithExperts(
      R"([{"layer": 1, "experts": [
          {"expert": 0, "tokens": 0,
           "methods": {"w1": "rtn-clip-search", "w2": "rtn-clip-search", "w3": "rtn-clip-search"}},
          {"expert": 1, "tokens": 9,
           "methods": {"w1": "gptq", "w2": "gptq-damped", "w3": "gptq"}}]}])"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->recipe.min_expert_tokens, 4);
  ASSERT_EQ(parsed->expert_calibration.size(), 1u);
  EXPECT_EQ(parsed->expert_calibration[0].layer, 1);
  ASSERT_EQ(parsed->expert_calibration[0].experts.size(), 2u);
  EXPECT_EQ(parsed->expert_calibration[0].experts[1].tokens, 9);
  EXPECT_EQ(parsed->expert_calibration[0].experts[1].methods.at("w2"), "gptq-damped");
  auto again = ParseQuantizedCheckpointManifest(SerializeQuantizedCheckpointManifest(*parsed));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(SerializeQuantizedCheckpointManifest(*again),
            SerializeQuantizedCheckpointManifest(*parsed));

  struct Bad {
    const char* experts;
    const char* field;
  };
  for (const Bad& bad : std::vector<Bad>{
           {R"([{"layer": 0, "experts": [{"expert": 0, "tokens": 1,
                "methods": {"w1": "gptq", "w2": "magic", "w3": "gptq"}}]}])",
            "expert_calibration[0].experts[0].methods.w2"},
           {R"([{"layer": 0, "experts": [{"expert": 0, "tokens": 1,
                "methods": {"w1": "gptq", "w3": "gptq"}}]}])",
            "expert_calibration[0].experts[0].methods.w2"},
           {R"([{"layer": 0, "experts": [{"expert": 0, "tokens": 1,
                "methods": {"w1": "gptq", "w2": "gptq", "w3": "gptq", "w4": "gptq"}}]}])",
            "expert_calibration[0].experts[0].methods.w4"},
           {R"([{"layer": 0, "experts": [{"expert": 1, "tokens": 1,
                "methods": {"w1": "gptq", "w2": "gptq", "w3": "gptq"}}]}])",
            "expert_calibration[0].experts[0].expert"},
           {R"([{"layer": 0, "experts": [{"expert": 0, "tokens": -1,
                "methods": {"w1": "gptq", "w2": "gptq", "w3": "gptq"}}]}])",
            "expert_calibration[0].experts[0].tokens"},
           {R"([{"layer": 0, "experts": []}, {"layer": 0, "experts": []}])",
            "expert_calibration[1].layer"},
           {R"([{"layer": 0, "experts": [], "extra": 1}])", "expert_calibration[0].extra"},
           {R"({"layer": 0})", "expert_calibration"}}) {
    auto status = ParseQuantizedCheckpointManifest(ManifestWithExperts(bad.experts)).status();
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << bad.experts << ": " << status;
    EXPECT_NE(status.message().find(bad.field), std::string::npos) << status;
  }
  // Without the field (dense models, older files): no records, the default threshold.
  auto dense = ParseQuantizedCheckpointManifest(R"({"format": "flatfleet-quantized",
    "format_version": 1, "recipe": {"name": "w4a8", "spec": {"method": "integer_scale"}},
    "source_model": "/m", "calibration": {}, "tensor_files": ["model.safetensors"],
    "layers": [], "float_layers": []})");
  ASSERT_TRUE(dense.ok()) << dense.status();
  EXPECT_TRUE(dense->expert_calibration.empty());
  EXPECT_EQ(dense->recipe.min_expert_tokens, kAutoMinExpertTokens);
  EXPECT_EQ(SerializeQuantizedCheckpointManifest(*dense).find("expert_calibration"),
            std::string::npos);
}

}  // namespace
}  // namespace flatfleet::quant
