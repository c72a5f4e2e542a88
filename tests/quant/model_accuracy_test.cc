// Whole models through QuantizedCpuBackend: KL(p_ref || p_quant) and top-1 agreement on the
// shared fixtures (against Hugging Face float32 logits) and on a synthetic outlier model
// (against the float32 engine). The measured values are printed; docs/ACCURACY.md has the table.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "quant/recipes.h"
#include "quantize/eval/model_under_test.h"
#include "quantize/eval/outlier_stress_model.h"
#include "quantize/eval/recipe_accuracy.h"
#include "worker/model/llama_weights.h"

namespace flatfleet::quant {
namespace {

std::filesystem::path FixtureDir(const std::string& name) {
  const char* shared = std::getenv("FLATFLEET_SHARED_DIR");
  return std::filesystem::path(shared ? shared : FLATFLEET_SHARED_DIR) / "fixtures" / name;
}

std::map<std::string, LogitAgreement> MeasureAll(const ModelUnderTest& model,
                                                 const TokenBatch& tokens,
                                                 const std::vector<float>& reference) {
  std::map<std::string, LogitAgreement> results;
  const TokenBatch calibration = CalibrationTokens(model.config.vocab_size);
  for (const std::string& name : ImplementedRecipeNames()) {
    auto recipe = RecipeByName(name);
    EXPECT_TRUE(recipe.ok());
    auto agreement = MeasureRecipe(model, *recipe, tokens, reference, calibration);
    EXPECT_TRUE(agreement.ok()) << name << ": " << agreement.status();
    if (!agreement.ok()) continue;
    std::printf("%-18s %-14s mean KL %.4g  max KL %.4g  top-1 %.4f  flipped margin <= %.3g\n",
                model.name.c_str(), name.c_str(), agreement->mean_kl, agreement->max_kl,
                agreement->top1_agreement, agreement->max_flipped_margin);
    results[name] = *agreement;
  }
  return results;
}

class FixtureAccuracyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureAccuracyTest, W8A8KeepsTop1AndMoreBitsHelp) {
  const std::filesystem::path dir = FixtureDir(GetParam());
  // A missing fixture is a failure, not a skip (set FLATFLEET_SHARED_DIR).
  ASSERT_TRUE(std::filesystem::exists(dir / "reference.safetensors")) << "fixture missing: " << dir;
  auto model = CheckpointModel(dir, /*bf16_rope=*/true);
  ASSERT_TRUE(model.ok()) << model.status();
  auto reference = ReadLogitReference(dir / "reference.safetensors");
  ASSERT_TRUE(reference.ok()) << reference.status();

  // The float engine itself matches the reference (otherwise the comparison below is moot).
  auto float_logits = FloatLogits(*model, reference->tokens);
  ASSERT_TRUE(float_logits.ok()) << float_logits.status();
  auto float_agreement = CompareLogits(reference->logits, *float_logits, reference->vocab);
  ASSERT_TRUE(float_agreement.ok());
  EXPECT_LT(float_agreement->mean_kl, 1e-6);
  EXPECT_EQ(float_agreement->top1_agreement, 1.0);

  // The LM head and the routers, and nothing else, stay float (Mixtral's experts and llama's
  // fused q|k|v have the LM head's shape [512, 256]).
  auto keep_float = model->FloatLinears();
  ASSERT_TRUE(keep_float.ok()) << keep_float.status();
  auto built = model->Build(kernels::cpu::DefaultCpuBackend());
  ASSERT_TRUE(built.ok()) << built.status();
  int kept = 0;
  for (const engine::NamedLinear& linear : (*built)->linears()) {
    const std::string& name = linear.request.name;
    const bool expected = name == "lm_head" || name.ends_with("block_sparse_moe.gate");
    EXPECT_EQ((*keep_float)(name), expected) << name;
    kept += expected;
  }
  EXPECT_EQ(kept, 1 + (model->config.is_moe() ? model->config.num_hidden_layers : 0));

  // Every recipe on the 26 reference positions (printed for docs/ACCURACY.md). With only 26
  // positions a top-1 bound of 0.97 means "no flip at all", and near-ties in the reference (one
  // mixtral-tiny position has its top two logits 0.0014 apart) decide it; the W8A8 top-1 target
  // is therefore asserted on many positions below.
  auto results = MeasureAll(*model, reference->tokens, reference->logits);
  ASSERT_TRUE(results.count("w8a8") && results.count("w4a4"));
  EXPECT_LT(results["w8a8"].mean_kl, results["w4a4"].mean_kl);
  EXPECT_LT(results["w8a8"].mean_kl, results["w4a8"].mean_kl);
  // FlatQuant's trained transforms beat plain W4A4 RTN; balanced 2-bit codes beat asymmetric RTN
  // (docs/ACCURACY.md, "FlatQuant and ABQ-LLM").
  ASSERT_TRUE(results.count("w4a4-flatquant") && results.count("w2a8-abq"));
  EXPECT_LT(results["w4a4-flatquant"].mean_kl, results["w4a4"].mean_kl);
  EXPECT_LT(results["w2a8-abq"].mean_kl, results["w2a8"].mean_kl);
}

// The W8A8 target (top-1 >= 0.97 against float32) over 8 x 64 = 512 seeded random
// positions, for the recommended W8A8 recipe, w8a8-hadamard-gptq. Plain w8a8 (RTN) reaches
// only 0.936 on llama-tiny (mean KL 2.1e-4; its flips are near-ties, but there are many: 38 of
// the 512 positions have a top-1 margin below 0.02); rotation + GPTQ halves the KL. The numbers
// and the per-layer analysis are in docs/ACCURACY.md.
TEST_P(FixtureAccuracyTest, RecommendedW8A8KeepsTop1OnManyPositions) {
  const std::filesystem::path dir = FixtureDir(GetParam());
  ASSERT_TRUE(std::filesystem::exists(dir / "config.json")) << "fixture missing: " << dir;
  auto model = CheckpointModel(dir, /*bf16_rope=*/false);
  ASSERT_TRUE(model.ok()) << model.status();
  const TokenBatch tokens = RandomTokens(8, 64, model->config.vocab_size, /*seed=*/2026);
  auto float_logits = FloatLogits(*model, tokens);
  ASSERT_TRUE(float_logits.ok()) << float_logits.status();
  const TokenBatch calibration = CalibrationTokens(model->config.vocab_size);
  std::map<std::string, LogitAgreement> results;
  for (const char* name : {"w8a8", "w8a8-hadamard-gptq"}) {
    auto recipe = RecipeByName(name);
    ASSERT_TRUE(recipe.ok());
    auto agreement = MeasureRecipe(*model, *recipe, tokens, *float_logits, calibration);
    ASSERT_TRUE(agreement.ok()) << agreement.status();
    std::printf("%-18s %-20s on %lld positions: mean KL %.4g  top-1 %.4f\n", GetParam().c_str(),
                name, static_cast<long long>(tokens.batch * tokens.length), agreement->mean_kl,
                agreement->top1_agreement);
    results[name] = *agreement;
  }
  EXPECT_GE(results["w8a8-hadamard-gptq"].top1_agreement, 0.97);
  EXPECT_LT(results["w8a8-hadamard-gptq"].mean_kl, results["w8a8"].mean_kl);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureAccuracyTest,
                         ::testing::Values("llama-tiny", "mixtral-tiny"));

TEST(OutlierStressTest, RotationOrOutliersHalveW4A4Kl) {
  const ModelUnderTest model = OutlierStressModel();
  const TokenBatch tokens = RandomTokens(2, 16, model.config.vocab_size, /*seed=*/99);
  // The first layer's normed inputs really have a few huge channels: per channel max |x| over
  // the prompt tokens, outlier channels >= 30x the median channel.
  {
    const int64_t hidden = model.config.hidden_size;
    auto embed =
        model.weights->Load("model.embed_tokens.weight", {model.config.vocab_size, hidden});
    auto norm = model.weights->Load("model.layers.0.input_layernorm.weight", {hidden});
    ASSERT_TRUE(embed.ok() && norm.ok());
    std::vector<float> channel_max(hidden, 0.0f);
    for (int32_t id : tokens.ids) {
      const float* row = embed->row(id);
      double mean_square = 0.0;
      for (int64_t c = 0; c < hidden; ++c) mean_square += row[c] * row[c];
      const double inv_rms = 1.0 / std::sqrt(mean_square / hidden + model.config.rms_norm_eps);
      for (int64_t c = 0; c < hidden; ++c) {
        channel_max[c] =
            std::max<float>(channel_max[c], std::fabs(row[c] * inv_rms * norm->data()[c]));
      }
    }
    std::vector<float> sorted = channel_max;
    std::sort(sorted.begin(), sorted.end());
    const float median = sorted[hidden / 2];
    for (int64_t c : OutlierStressOptions().outlier_channels)
      EXPECT_GE(channel_max[c], 30 * median);
  }
  auto reference = FloatLogits(model, tokens);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto results = MeasureAll(model, tokens, *reference);
  ASSERT_TRUE(results.count("w4a4") && results.count("w4a4-hadamard") &&
              results.count("w4a4-quik"));
  const double best = std::min(results["w4a4-hadamard"].mean_kl, results["w4a4-quik"].mean_kl);
  EXPECT_LT(best, 0.5 * results["w4a4"].mean_kl);
  // FlatQuant's smoothing + trained Kronecker transform beats RTN, the rotation and QUIK here.
  ASSERT_TRUE(results.count("w4a4-flatquant"));
  EXPECT_LT(results["w4a4-flatquant"].mean_kl, 0.5 * results["w4a4"].mean_kl);
  EXPECT_LT(results["w4a4-flatquant"].mean_kl, results["w4a4-hadamard"].mean_kl);
  EXPECT_LT(results["w4a4-flatquant"].mean_kl, results["w4a4-quik"].mean_kl);
}

}  // namespace
}  // namespace flatfleet::quant
